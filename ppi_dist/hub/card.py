"""The model card: Hub metadata (YAML front matter) and the text around the metrics.

    card = ModelCard(base_model="facebook/esm2_t33_650M_UR50D", metrics={"test": {...}})
    text = card.render()

Every card carries the trivial predictors' scores beside the model's, the leakage caveat,
and how to load and score with the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_NAME = "README.md"
# Keys dropped from a training config before it is written or shown in the card.
_SECRET_KEY = re.compile(r"token|password|secret|api_key|credential", re.IGNORECASE)
# Metrics listed in the card (and the Hub model-index), in this order.
CARD_METRICS = {
    "auroc": "AUROC",
    "aupr": "AUPR",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "mcc": "MCC",
    "score": "Weighted score",
    "threshold": "Threshold",
    "all_positive_score": "Score of 'all interact'",
    "all_negative_score": "Score of 'none interact'",
    "n": "Pairs",
    "positive_fraction": "Positive fraction",
}


def scrub_secrets(value: Any) -> Any:
    """A copy of a (nested) config with credential-like keys removed."""
    if isinstance(value, Mapping):
        return {k: scrub_secrets(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value]
    return value


def _format_value(value: Any) -> str:
    """A metric as the card shows it (4 decimals, counts with separators)."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class ModelCard:
    """What a model card says."""

    base_model: str | None = None
    """The encoder's Hub name (`base_model` in the Hub metadata)."""
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Split name -> metric values (e.g. `ThresholdResult.summary()`)."""
    threshold_objective: str | None = None
    """What the decision threshold maximised on validation."""
    calibration: str | None = None
    """How the probabilities are calibrated (`Calibration.describe()`); None: raw scores."""
    data: Mapping[str, str] | None = None
    """Split name -> where that split came from (free text: file, dataset, block)."""
    datasets: list[str] | None = None
    """Hub dataset ids for the metadata."""
    training_config: Mapping[str, Any] | None = None
    """The run's settings, shown (credential-like keys removed)."""
    repo_id: str | None = None
    """The Hub repository, named in the loading instructions."""
    model_name: str = "SE-CAI"
    merged: bool = False
    """LoRA merged into the encoder (loads without peft)."""
    lora_layers: int | None = None
    """LoRA on the encoder's last N layers only (None: every layer)."""
    images: list[str] = field(default_factory=list)
    """Plot files in the folder, shown under "Curves"."""

    def metadata(self) -> dict:
        """The Hub metadata block: base model, tags, datasets and a model-index of the metrics."""
        metadata: dict[str, Any] = {
            "library_name": "ppi_dist" if self.merged else "peft",
            "license": "apache-2.0",
            "tags": [
                "protein",
                "protein-protein-interaction",
                "ppi",
                "esm2",
                "lora",
                "cross-attention",
                "biology",
                "ppi_dist",
            ],
            "pipeline_tag": "text-classification",
        }
        if self.base_model:
            metadata["base_model"] = self.base_model
        if self.datasets:
            metadata["datasets"] = list(self.datasets)
        results = []
        for split, values in self.metrics.items():
            listed = [
                {"type": key, "name": CARD_METRICS[key], "value": round(float(values[key]), 6)}
                for key in ("auroc", "aupr", "accuracy", "precision", "recall", "f1", "mcc")
                if key in values and values[key] == values[key]  # skip NaN
            ]
            if listed:
                dataset = (self.data or {}).get(split, split)
                results.append(
                    {
                        "task": {
                            "type": "text-classification",
                            "name": "Protein-protein interaction prediction",
                        },
                        "dataset": {"name": dataset, "type": dataset, "split": split},
                        "metrics": listed,
                    }
                )
        if results:
            metadata["model-index"] = [{"name": self.model_name, "results": results}]
        return metadata

    def render(self) -> str:
        """The card text: YAML front matter, then metrics, data, use, caveats, loading."""
        front = yaml.safe_dump(self.metadata(), sort_keys=False, allow_unicode=True)
        title = f"# {self.model_name}: siamese ESM-2 cross-attention PPI model"
        how = ", LoRA merged into it" if self.merged else ", fine-tuned with LoRA"
        if self.lora_layers is not None:
            how += f" on its last {self.lora_layers} layers"
        lines = [f"---\n{front}---", "", title, ""]
        lines += [
            "Predicts whether two proteins interact from their sequences alone. Both proteins go "
            f"through the same ESM-2 encoder (`{self.base_model or 'ESM-2'}`{how}); their "
            "residues attend to each other (bidirectional cross-attention), are max- and "
            "mean-pooled, and a small head gives one probability per pair, symmetric in the "
            "two proteins.",
            "",
            "## Metrics",
            "",
            *self._metrics_table(),
            "",
            self._probabilities(),
            "",
            "## Data",
            "",
        ]
        if self.data:
            lines += [f"- **{split}**: {where}" for split, where in self.data.items()]
        else:
            lines.append("Not recorded.")
        if self.images:
            lines += ["", "## Curves", ""]
            lines += [f"![{Path(image).stem}]({image})" for image in self.images]
        lines += ["", *_USE_AND_LIMITS, "", *self._how_to_load()]
        if self.training_config:
            shown = json.dumps(scrub_secrets(dict(self.training_config)), indent=2, default=str)
            lines += ["", "## Training configuration", "", "```json", shown, "```"]
        return "\n".join(lines) + "\n"

    def _metrics_table(self) -> list[str]:
        if not self.metrics:
            return ["No evaluation was recorded for this run."]
        splits = list(self.metrics)
        lines = ["| metric | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
        for key, name in CARD_METRICS.items():
            if any(key in self.metrics[s] for s in splits):
                cells = [_format_value(self.metrics[s].get(key, "")) for s in splits]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        objective = self.threshold_objective or "objective not recorded"
        lines += [
            "",
            f"The threshold was chosen on validation ({objective}); the rows 'all interact' / "
            "'none interact' are the weighted score (accuracy, precision, recall, F1) of the "
            "trivial predictors on the same pairs. A weighted score near those is no evidence "
            "of a working model: judge it by AUROC, AUPR and MCC.",
        ]
        return lines

    def _probabilities(self) -> str:
        if self.calibration is None:
            return "Probabilities: the raw sigmoid (no calibration was fitted)."
        return (
            f"Probabilities: calibrated ({self.calibration}); `ppi-dist predict --prior q` "
            "moves them to a balance where a share q of pairs interact. The decision "
            "threshold applies to the raw score (the `raw_score` column)."
        )

    def _how_to_load(self) -> list[str]:
        where = self.repo_id or "path/or/repo-id"
        lines = [
            "## How to load",
            "",
            "```python",
            "from ppi_dist.hub import load_model",
            f'model = load_model("{where}")  # download + from_pretrained',
            "```",
            "",
            "Score pairs, or all pairs of a FASTA file (each protein encoded once):",
            "",
            "```bash",
            f"ppi-dist predict --model {where} --fasta proteins.fasta --out scores.tsv",
            "```",
        ]
        if self.merged:
            lines += ["", "LoRA is merged into `base_encoder/`: loading needs no peft adapter."]
        return lines


_USE_AND_LIMITS = [
    "## Intended use and limits",
    "",
    "Ranking candidate protein pairs for follow-up (screening, all-vs-all over a proteome), "
    "not as evidence of an interaction. Proteins longer than the encoder's window "
    "(`max_residues` in `secai_config.json`, 1,022 by default) are read as overlapping windows "
    "stitched into one (`scoring_windows: all`, the default) or cropped to the central window "
    "(`crop`); `predict`, `evaluate` and `explain` use the folder's own settings.",
    "",
    "**Leakage caveat.** Random pair splits leak: most test proteins then also occur in "
    "training, and sequence models score highly by recognising proteins rather than "
    "interactions (published models drop from about 0.9 accuracy on random splits to near "
    "chance on protein-disjoint ones). Only a protein-disjoint evaluation, such as the Bernett "
    "et al. 2024 gold standard, says how the model does on new proteins. Compare every figure "
    "with the trivial baselines above.",
]


def parse_card_metadata(text: str) -> dict:
    """The YAML front matter of a model card."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if match is None:
        raise ValueError("no YAML front matter")
    return yaml.safe_load(match.group(1))
