"""Checks of setting values, shared by the model's and the trainer's configurations.

Each raises a `ConfigError` naming the setting, its value and what it must be, so a wrong
value stops at start (the recipe loader adds the recipe's file and line) instead of deep
inside torch, or silently training something else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection

from ppi_dist.errors import ConfigError


def check_choice(name: str, value: object, allowed: Collection[object]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def check_at_least_one(settings: object, names: Collection[str], hint: str = "") -> None:
    """Each of `names` (attributes of `settings`; None means unset) is an integer >= 1."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}{hint}")


def check_fraction(name: str, value: float | None, *, closed: bool = True) -> None:
    """`value` lies in [0, 1] (`closed`) or [0, 1); None means unset."""
    if value is None:
        return
    inside = 0 <= value <= 1 if closed else 0 <= value < 1
    if not inside:
        raise ConfigError(f"{name} must lie in [0, {'1]' if closed else '1)'}, got {value}")


def check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def check_non_negative(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}")


def describe_value(value: object) -> str:
    """A value as the user wrote it, its kind said when that is the problem (a JSON string
    "0.5" reads as 0.5 in a message otherwise)."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return repr(value)


def check_probability(name: str, value: object) -> float:
    """`value` is a number in [0, 1] (a threshold, a probability): returned as a float.
    A string, a boolean, NaN or a number outside is a `ConfigError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number in [0, 1], got {describe_value(value)}")
    if not 0 <= value <= 1:  # NaN fails both comparisons
        raise ConfigError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def check_field_types(settings: object, where: str = "") -> None:
    """Each field of the dataclass `settings` holds a value of its declared kind: `int`,
    `float` (an int is fine), `str`, `bool`, `dict`, `list[str]`, or None where allowed.
    Values from JSON or YAML with the wrong kind ("32", 8.5, null) are refused naming the
    field, before torch fails on them far from the file."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        annotation = str(field.type).replace(" ", "")
        kinds = annotation.split("|")
        if value is None:
            if "None" not in kinds:
                raise ConfigError(f"{where}{field.name} must be set, got null")
            continue
        if not any(_is_kind(value, kind) for kind in kinds if kind != "None"):
            wanted = " or ".join(_KIND_NAMES.get(kind, kind) for kind in kinds)
            raise ConfigError(f"{where}{field.name} must be {wanted}, got {describe_value(value)}")


_KIND_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "dict": "an object",
    "list[str]": "a list of names",
    "None": "null",
}


def _is_kind(value: object, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):  # JSON true is not a number here
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    if kind == "str":
        return isinstance(value, str)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "list[str]":
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return True  # a kind not checked here


# A validation set picks the checkpoint and the decision threshold by ranking its pairs: with
# fewer pairs than this of either class, AUROC, AUPR and the threshold are noise (or NaN).
MIN_VALIDATION_PAIRS_PER_CLASS = 5
# The trainer's own held-out validation (`valid_fraction`): it chooses the checkpoint, the
# threshold and the calibration, which an AUROC over a few dozen pairs of a class cannot.
MIN_HELD_OUT_PAIRS_PER_CLASS = 50


def check_can_rank(
    where: str, positives: int, negatives: int, hint: str, low: int = MIN_VALIDATION_PAIRS_PER_CLASS
) -> None:
    """Refuse a validation set with fewer than `low` positive or negative pairs: nothing
    could be chosen on it. `hint`: what to change."""
    if positives < low or negatives < low:
        raise ConfigError(
            f"{where}: {positives:,} positive and {negatives:,} negative pairs; validation "
            f"needs at least {low} of each to rank pairs and choose a threshold; {hint}"
        )


def check_saved_threshold(where: str, saved: object) -> float:
    """A model folder's saved decision threshold (`where` names the folder or its config),
    the one check of `predict` and `report`: missing, not a number (a JSON string "0.5"),
    NaN or outside [0, 1] is refused, saying how to go on."""
    if saved is None:
        raise ConfigError(f"{where}: no decision_threshold saved; pass --threshold")
    if isinstance(saved, bool) or not isinstance(saved, int | float):
        problem = f"is {describe_value(saved)}, not a number in [0, 1]"
    elif not 0 <= saved <= 1:
        problem = f"{saved} is not in [0, 1]"
    else:
        return float(saved)
    raise ConfigError(
        f"{where}: saved decision_threshold {problem} (damaged config?); fix it, or pass "
        "--threshold"
    )
