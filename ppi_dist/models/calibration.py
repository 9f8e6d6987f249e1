"""The model's calibration: the map from its raw sigmoid score to a probability.

Part of a saved model (`calibration.json` beside the weights, loaded with them), so that
`predict`, `evaluate` and `explain` all report the same calibrated probability. It is fitted
on the validation scores at the end of training (`evaluation.calibration.fit_platt`):

    p = sigmoid(slope * logit(score) + offset)

The slope is positive for any model that ranks better than chance, so the map is increasing:
it keeps the ranking (AUROC, AUPR) and the decisions. The decision threshold is chosen and
applied on the raw score; `apply(threshold)` is the same cut on the calibrated scale.

A probability holds at a class balance. The calibration is fitted with the validation
classes weighted to `prior` (0.5: as many interacting pairs as not, the balance of the
benchmarks' test sets), whatever the validation set's own balance: a similarity-disjoint
hold-out can be 90% positive. `apply(scores, prior=q)` moves the probabilities to another
balance q by Bayes' rule, assuming each class scores as it did on validation (label shift):
logit p_q = logit p + logit q - logit prior. A proteome screen, where perhaps one pair in a
hundred interacts, reads `prior=0.01`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ppi_dist.checks import check_field_types
from ppi_dist.errors import ConfigError
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
    prior: float | None = 0.5
    """The positive fraction the probabilities hold at; None: the validation set's own
    (a folder saved before the prior was recorded)."""

    def apply(self, scores: np.ndarray | list[float], prior: float | None = None) -> np.ndarray:
        """Calibrated probabilities of raw scores, float64, same shape; at `prior` when given
        (see the module docstring), else at `self.prior`."""
        z = self.slope * logit(scores) + self.offset
        if prior is not None and prior != self.prior:
            if self.prior is None:
                raise ValueError("this calibration was saved without its prior: cannot move it")
            z = z + logit(prior) - logit(self.prior)
        return 1.0 / (1.0 + np.exp(-z))

    def describe(self, prior: float | None = None) -> str:
        at = self.prior if prior is None else prior
        balance = "the validation set's balance" if at is None else f"{at:g} positive"
        return (
            f"{self.method} scaling fitted on {self.pairs:,} {self.fitted_on} pairs, at {balance}"
        )

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_NAME
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        """The folder's calibration, or None when it has none (saved before there was one).
        A missing field, a value of the wrong kind or outside its range is a `ConfigError`
        naming the file and the field (`check`)."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        values = read_json(path)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        missing = [name for name in ("slope", "offset") if name not in values]
        try:
            if unknown:
                raise ConfigError(f"unknown field {unknown[0]!r} (saved by a newer version?)")
            if missing:
                raise ConfigError(f"{missing[0]} is missing")
            calibration = cls(**values)
            calibration.check()
        except ConfigError as error:
            raise ConfigError(
                f"{path}: {error}; the file is damaged: copy or download the model folder again"
            ) from None
        return calibration

    def check(self) -> None:
        """Each field of its kind (a string "1.5" or a boolean is not a number) and in range:
        a slope that is not a finite number above 0 would reverse or flatten the ranking
        (`fit_platt` never ships one), a non-finite offset would give every pair the same
        probability, and a prior must be a share strictly between 0 and 1."""
        check_field_types(self)
        if not (math.isfinite(self.slope) and self.slope > 0):
            raise ConfigError(f"slope must be a finite number above 0, got {self.slope!r}")
        if not math.isfinite(self.offset):
            raise ConfigError(f"offset must be a finite number, got {self.offset!r}")
        if self.prior is not None and not 0 < self.prior < 1:
            raise ConfigError(f"prior must lie strictly between 0 and 1, got {self.prior!r}")
        if self.pairs < 0:
            raise ConfigError(f"pairs must be at least 0, got {self.pairs}")


def calibrated(model: object, scores: np.ndarray, prior: float | None = None) -> np.ndarray | None:
    """`model`'s calibrated probabilities of its raw `scores` (at `prior` when given); None
    when it has no calibration (a folder saved before calibration existed)."""
    calibration = getattr(model, "calibration", None)
    return None if calibration is None else calibration.apply(scores, prior)
