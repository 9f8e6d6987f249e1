"""The model's calibration: the map from its raw sigmoid score to a probability.

Part of a saved model (`calibration.json` beside the weights, loaded with them), so that
`predict`, `evaluate` and `explain` all report the same calibrated probability. It is fitted
on the validation scores at the end of training (`evaluation.calibration.fit_platt`):

    p = sigmoid(slope * logit(score) + offset)

The slope is positive for any model that ranks better than chance, so the map is increasing:
it keeps the ranking (AUROC, AUPR) and the decisions. The decision threshold is chosen and
applied on the raw score; `apply(threshold)` is the same cut on the calibrated scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ppi_dist.files import read_json, write_text_atomic

CALIBRATION_NAME = "calibration.json"
_EPS = 1e-7


def logit(scores: np.ndarray | list[float]) -> np.ndarray:
    """log(p / (1 - p)) in float64, p clipped to [1e-7, 1 - 1e-7] (a score may be 0 or 1)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """p = sigmoid(slope * logit(score) + offset), fitted on `fitted_on` (`pairs` of them)."""

    slope: float
    offset: float
    method: str = "platt"
    fitted_on: str = "validation"
    pairs: int = 0

    def apply(self, scores: np.ndarray | list[float]) -> np.ndarray:
        """Calibrated probabilities of raw scores, float64, same shape."""
        z = self.slope * logit(scores) + self.offset
        return 1.0 / (1.0 + np.exp(-z))

    def describe(self) -> str:
        return f"{self.method} scaling fitted on {self.pairs:,} {self.fitted_on} pairs"

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_NAME
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        """The folder's calibration, or None when it has none (saved before there was one)."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        values = read_json(path)
        return cls(
            slope=float(values["slope"]),
            offset=float(values["offset"]),
            method=str(values.get("method", "platt")),
            fitted_on=str(values.get("fitted_on", "validation")),
            pairs=int(values.get("pairs", 0)),
        )


def calibrated(model: object, scores: np.ndarray) -> np.ndarray | None:
    """`model`'s calibrated probabilities of its raw `scores`; None when it has no calibration
    (a model folder saved before calibration existed, or a model never trained to the end)."""
    calibration = getattr(model, "calibration", None)
    return None if calibration is None else calibration.apply(scores)
