"""Flag values checked where they are parsed, so a bad one stops in one line naming the flag.

    parser = Parser(prog="ppi-dist predict")
    parser.add_argument("--tile", type=at_least(1), default=64)
    parser.add_argument("--min_prob", type=probability)

`Parser` is argparse's, with its usage errors raised as `ConfigError`s: the error boundary
prints them as one line, `error: argument --tile: must be at least 1, got 0`, exit 2 (not
argparse's usage block). The types raise `ArgumentTypeError`, whose text argparse keeps.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from ppi_dist.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are `ConfigError`s (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def at_least(low: int) -> Callable[[str], int]:
    """An integer flag of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def probability(text: str) -> float:
    """A number in [0, 1] (a threshold, a probability); NaN refused."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a share that must leave something on each side)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def fraction(*, zero: bool, one: bool) -> Callable[[str], float]:
    """A number between 0 and 1, `zero` and `one` saying whether each end is accepted: the
    range the message gives is the one the command accepts ([0, 1), (0, 1])."""
    low, high = "[" if zero else "(", "]" if one else ")"

    def parse(text: str) -> float:
        value = _number(text)
        inside = (value >= 0 if zero else value > 0) and (value <= 1 if one else value < 1)
        if not inside:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"must lie in {low}0, 1{high}, got {text}")
        return value

    parse.__name__ = f"number in {low}0, 1{high}"
    return parse


def positive(text: str) -> float:
    """A finite number above 0."""
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
