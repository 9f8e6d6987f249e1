"""Checks of setting values, shared by the model's and the trainer's configurations.

Each raises a `ConfigError` naming the setting, its value and what it must be, so a wrong
value stops at start (the recipe loader adds the recipe's file and line) instead of deep
inside torch, or silently training something else.
"""

from __future__ import annotations

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
