"""Helpers the tests share: tiny ESM-2 SE-CAI models, random protein pairs, the paths."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ppi_dist.data.pairs import Pair
from ppi_dist.data.sequences import STANDARD_RESIDUES, random_residues, tokenize
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.secai import SECAI
from ppi_dist.models.shapes import tiny_esm2_config

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# The longest a process started by a test may run: a guard against a hung process, not a
# timing. Tests wait for the process's exit, a line or a file; on a loaded 2-core machine
# two ZeRO-2 ranks take minutes.
PROCESS_LIMIT_S = 1800


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    """Poll `condition` until it holds; fail, with the process's output, if the process
    exits first or PROCESS_LIMIT_S passes."""
    deadline = time.monotonic() + PROCESS_LIMIT_S
    while not condition():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(
                f"{what}: the process exited first ({process.returncode})\n{output[-3000:]}"
            )
        assert time.monotonic() < deadline, f"{what}: not after {PROCESS_LIMIT_S} s"
        time.sleep(0.05)


def random_sequence(rng: random.Random, low: int = 8, high: int = 40) -> str:
    return random_residues(rng, rng.randint(low, high))


def random_pairs(n: int, seed: int = 0, proteins: int | None = None) -> list[Pair]:
    """`n` labelled pairs over `proteins` distinct random proteins (default: 2n)."""
    rng = random.Random(seed)
    pool = [random_sequence(rng) for _ in range(proteins or 2 * n)]
    pairs = []
    for _ in range(n):
        i, j = rng.randrange(len(pool)), rng.randrange(len(pool))
        pairs.append(Pair(f"P{i}", f"P{j}", pool[i], pool[j], float(rng.random() < 0.5)))
    return pairs


def tiny_model(seed: int = 0, **overrides) -> SECAI:
    torch.manual_seed(seed)
    settings = {
        "encoder": None,
        "encoder_config": tiny_esm2_config(),
        "cross_attention_heads": 4,
        "head_hidden": 16,
        "head_dropout": 0.0,
        "lora_r": 4,
    }
    return SECAI(SECAIConfig(**{**settings, **overrides}))


def states_alone(model: SECAI, sequences: list[str]) -> list[torch.Tensor]:
    """Each sequence through the encoder on its own, no padding at all."""
    alone = []
    for sequence in sequences:
        ids, mask = tokenize([sequence])
        alone.append(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0])
    return alone


def sgd_step(model: SECAI, batch: dict) -> None:
    """One plain SGD step on binary cross-entropy: moves LoRA, head, first pass and BatchNorm
    statistics."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    if model.first_pass is None:
        logits, labels = model(**batch), batch["labels"]
    else:
        logits = torch.cat(model(**batch, with_first_pass=True))
        labels = batch["labels"].repeat(2)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    optimizer.step()


# The function each `encoder_attention` choice must reach in `ppi_dist.models.attention`.
KERNEL_FUNCTION = {
    "varlen": "varlen_attention",
    "flex": "flex_attention_forward",
    "cudnn": "sdpa_kernel",
}


def spy_on_kernel(monkeypatch, choice: str) -> list[int]:
    """Count calls into the attention function `choice` must take; the real one still runs."""
    from ppi_dist.models import attention

    name = KERNEL_FUNCTION[choice]
    calls, real = [], getattr(attention, name)
    monkeypatch.setattr(attention, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _mutant(sequence: str, rng: random.Random, changed: float) -> str:
    return "".join(rng.choice(STANDARD_RESIDUES) if rng.random() < changed else c for c in sequence)


def write_community_task(tmp_path, seed=0):
    """8 communities of 25 proteins (positives inside them, negatives anywhere); H0..H4 are
    ~85%-identical copies of C0_0..C0_4 placed in other communities, P1 repeats P0."""
    rng = random.Random(seed)
    sequences, community = {}, {}
    for c in range(8):
        for i in range(25):
            name = f"C{c}_{i}"
            sequences[name] = "".join(rng.choices(STANDARD_RESIDUES, k=90))
            community[name] = c
    for i in range(5):
        sequences[f"H{i}"] = _mutant(sequences[f"C0_{i}"], rng, 0.15)
        community[f"H{i}"] = 1 + i
    sequences["P0"] = "".join(rng.choices(STANDARD_RESIDUES, k=90))
    sequences["P1"] = sequences["P0"]
    community["P0"] = community["P1"] = 7
    members: dict[int, list[str]] = {}
    for name, c in community.items():
        members.setdefault(c, []).append(name)
    pairs: dict[tuple[str, str], int] = {}
    while sum(pairs.values()) < 900:
        c = rng.randrange(8)
        a, b = sorted(rng.sample(members[c], 2))
        pairs[(a, b)] = 1
    names = sorted(sequences)
    while len(pairs) < 1800:
        a, b = sorted(rng.sample(names, 2))
        pairs.setdefault((a, b), 0)
    pair_file, fasta = tmp_path / "pairs.tsv", tmp_path / "seqs.fasta"
    pair_file.write_text(
        "protein_a\tprotein_b\tlabel\n"
        + "".join(f"{a}\t{b}\t{y}\n" for (a, b), y in sorted(pairs.items()))
    )
    fasta.write_text("".join(f">{p}\n{s}\n" for p, s in sequences.items()))
    return pair_file, fasta, sequences, pairs
