"""What a run leaves in its folder at the end: predictions, plots, metrics and the model.

output_dir/
  predictions_validation.tsv, predictions_test.tsv   every pair: probability, raw score, decision
                                                      (and the first pass's probability)
  plots/validation/, plots/test/                      PR, ROC and threshold plots
  metrics.json                                        each split, every objective, the first
                                                      pass's ranking and what each screen keeps
  model/                                              the model folder (`hub.folder`)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

from ppi_dist.data.pairs import PairSource
from ppi_dist.evaluation.evaluate import first_pass_ranking
from ppi_dist.evaluation.plots import plot_evaluation
from ppi_dist.evaluation.threshold import ThresholdResult
from ppi_dist.hub.card import ModelCard
from ppi_dist.hub.folder import save_for_hub
from ppi_dist.inference.scoring import ScoredPairs
from ppi_dist.models.calibration import calibrated
from ppi_dist.models.saving import from_pretrained, save_pretrained
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.machine import environment


@dataclass
class FinalResults:
    """The end of a run, at the threshold chosen on validation."""

    results: dict[str, ThresholdResult]
    """Split ("validation", "test") -> its metrics at that threshold."""
    predictions: dict[str, ScoredPairs]
    """Split -> its pairs and their probabilities."""
    comparison: dict[str, dict[str, ThresholdResult]] | None = None
    """Each threshold objective's validation choice and test metrics
    (`evaluation.threshold.compare_objectives`), when there is a test split."""


def first_pass_metrics(predictions: dict[str, ScoredPairs]) -> dict[str, dict[str, float]]:
    """Split -> the first pass's AUROC, AUPR and screens (`first_pass_ranking`; empty
    without a first pass)."""
    rankings = {split: first_pass_ranking(scored) for split, scored in predictions.items()}
    return {split: ranking for split, ranking in rankings.items() if ranking}


def save_and_reload(model: SECAI, folder: Path, accelerator: Accelerator) -> SECAI:
    """Save `model` (main process), then load it back on every process, on its device: the
    model exactly as it ships (fp32 weights), for the scores its threshold is chosen on."""
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        save_pretrained(model, folder)
    accelerator.wait_for_everyone()
    return from_pretrained(folder).to(accelerator.device)


def save_run_outputs(
    config: TrainConfig, model: SECAI, final: FinalResults, sources: dict[str, PairSource]
) -> Path:
    """Predictions, plots, metrics.json and the model folder with its card (main process)."""
    output_dir = Path(config.run.output_dir)
    chosen = final.results["validation"]
    model.config.decision_threshold = chosen.threshold
    model.config.threshold_objective = chosen.objective
    images: list[Path] = []
    for split, result in final.results.items():
        scored = final.predictions[split]
        # The calibrated probability with the raw score beside it, as predict writes them.
        probabilities = calibrated(model, scored.scores)
        scored.write_tsv(output_dir / f"predictions_{split}.tsv", chosen.threshold, probabilities)
        if config.evaluation.plots:
            plots = output_dir / "plots" / split
            images += plot_evaluation(scored.scores, scored.labels, result, plots, split)
    metrics = {split: result.summary() for split, result in final.results.items()}
    extra: dict = {"threshold_objective": chosen.objective}
    extra["environment"] = environment(next(model.parameters()).device)
    if first_pass := first_pass_metrics(final.predictions):
        extra["first_pass"] = first_pass
    if final.comparison:
        extra["objectives"] = {
            objective: {"threshold": pair["validation"].threshold, "test": pair["test"].summary()}
            for objective, pair in final.comparison.items()
        }
    text = json.dumps({**metrics, **extra}, indent=2, default=str) + "\n"
    (output_dir / "metrics.json").write_text(text)
    names = {"train": "train", "valid": "validation", "test": "test"}
    data = {
        names[split]: ", ".join(source.files) or str(source.dataset_name)
        for split, source in sources.items()
    }
    card = ModelCard(metrics=metrics, data=data, repo_id=config.run.push_to_hub)
    folder = output_dir / "model"
    return save_for_hub(model, folder, card, training_config=config.to_dict(), images=images)
