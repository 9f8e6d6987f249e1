"""The picture of an explained pair: both attention maps with the hotspot profiles beside them.

    plot_explanation(explanation, "pair/attention.png", top_k=5)

Left, A->B: rows are A's residues (the queries), columns B's; the strip above is B's hotspot
profile, the strip to the right A's. Right, B->A the other way round. Axes are residue
positions (the maps may be averaged into bins, the profiles are per residue), and the top
residues of each protein are labelled on its profile.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np

from ppi_dist.inference.explain import DEFAULT_SCORE, PairExplanation


def plot_explanation(
    explanation: PairExplanation, path: str | Path, *, top_k: int = 5, score: str = DEFAULT_SCORE
) -> Path:
    e = explanation
    figure = plt.figure(figsize=(13, 7))
    grid = figure.add_gridspec(
        3,
        5,
        width_ratios=[6, 1.2, 0.6, 6, 1.2],
        height_ratios=[1.2, 6, 0.25],
        wspace=0.08,
        hspace=0.32,
    )
    blocks = (
        (0, e.attention_ab, ("a", e.protein_a, e.sequence_a), ("b", e.protein_b, e.sequence_b)),
        (3, e.attention_ba, ("b", e.protein_b, e.sequence_b), ("a", e.protein_a, e.sequence_a)),
    )
    for column, weights, (q_side, q_name, q_seq), (k_side, k_name, k_seq) in blocks:
        heat = figure.add_subplot(grid[1, column])
        image = heat.imshow(
            weights,
            aspect="auto",
            cmap="viridis",
            extent=(0.5, len(k_seq) + 0.5, len(q_seq) + 0.5, 0.5),
            interpolation="nearest",
        )
        heat.set(xlabel=f"{k_name} residue (keys)", ylabel=f"{q_name} residue (queries)")
        bar = figure.add_subplot(grid[2, column])
        figure.colorbar(image, cax=bar, orientation="horizontal", label="mean attention")
        top = figure.add_subplot(grid[0, column], sharex=heat)
        _profile(top, e, k_side, k_seq, top_k, score, horizontal=True)
        top.set_title(f"{q_name} -> {k_name}", fontsize=10)
        side = figure.add_subplot(grid[1, column + 1], sharey=heat)
        _profile(side, e, q_side, q_seq, top_k, score, horizontal=False)
    figure.suptitle(
        f"{e.protein_a} x {e.protein_b}: P(interact) = {e.probability:.3f}; profiles: {score}",
        fontsize=11,
    )
    path = Path(path)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _profile(axes, e: PairExplanation, side: str, sequence: str, k: int, score, horizontal):
    values = (e.hotspots_a if side == "a" else e.hotspots_b)[score]
    positions = np.arange(1, len(values) + 1)
    if horizontal:
        axes.fill_between(positions, values, step="mid", color="tab:orange")
        axes.tick_params(labelbottom=False)
    else:
        axes.fill_betweenx(positions, values, step="mid", color="tab:orange")
        axes.tick_params(labelleft=False)
    for position, label, value in _runs(e.top_residues(side, k, score), sequence):
        if horizontal:
            axes.annotate(label, (position, value), fontsize=7, ha="center", va="bottom")
        else:
            axes.annotate(label, (value, position), fontsize=7, ha="left", va="center")
    axes.grid(alpha=0.3)


def _runs(top: list[tuple], sequence: str) -> list[tuple[int, str, float]]:
    """Top residues next to each other as one label ("D9-D12", at the run's highest score),
    so a motif's labels do not print over each other."""
    runs: list[list[tuple]] = []
    for item in sorted(top):
        if runs and item[0] == runs[-1][-1][0] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    labels = []
    for run in runs:
        first, last = run[0][0], run[-1][0]
        position, _, value = max(run, key=lambda item: item[2])
        label = f"{sequence[first - 1]}{first}"
        if last > first:
            label += f"-{sequence[last - 1]}{last}"
        labels.append((position, label, value))
    return labels
