"""Reading a run's settings: a YAML recipe, then `--key value` flags, into a `TrainConfig`.

    config = load_config(["--config", "recipes/synthetic_tiny.yaml", "--epochs", "2"])

Recipes are data: every key must be a setting (`training.config.FIELDS`), given by its flat
name. A wrong key or value is a `ConfigError` naming the recipe's file and line; a wrong flag
names the flag. Flags override the recipe. `--help` lists every setting with its docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ppi_dist.errors import ConfigError
from ppi_dist.training.config import FIELDS, TrainConfig

logger = logging.getLogger(__name__)
# Settings that were removed because they changed nothing: a recipe key or flag naming one
# still loads, with one line saying it is ignored.
RETIRED = {"eval_max_tokens": "scoring budgets its pair batches itself"}


def _flag_namespace() -> type:
    """One flat dataclass of every setting, for `HfArgumentParser` (which reads one level)."""
    fields = []
    for place in FIELDS.values():
        default = place.default
        spec = (
            dataclasses.field(
                default_factory=(lambda value=default: list(value)),
                metadata={"help": place.doc},
            )
            if isinstance(default, list)
            else dataclasses.field(default=default, metadata={"help": place.doc})
        )
        fields.append((place.name, place.type, spec))
    return dataclasses.make_dataclass("TrainFlags", fields)


TrainFlags = _flag_namespace()


def _recipe_with_lines(path: Path) -> tuple[dict, dict[str, int]]:
    """The recipe mapping and the line of each top-level key (for error messages)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read recipe: {error.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}:1: a recipe is a mapping of `key: value` lines")
    lines = {}
    if node is not None:
        for key_node, _ in node.value:
            lines[key_node.value] = key_node.start_mark.line + 1
    return values, lines


def _check_type(key: str, value: Any, where: str) -> Any:
    """The recipe value, checked against the setting's type (argparse would just exit)."""
    declared = FIELDS[key].type
    members = typing.get_args(declared) if isinstance(declared, types.UnionType) else ()
    base = next((m for m in members if m is not type(None)), declared)
    if value is None:
        if type(None) not in members:
            raise ConfigError(f"{where}: {key} cannot be empty")
        return value
    if base is float and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string; take it as the number it was meant as.
        with contextlib.suppress(ValueError):
            value = float(value)
    is_list = typing.get_origin(base) is list
    accepted = (list,) if is_list else {float: (int, float)}.get(base, (base,))
    name = "list[str]" if is_list else base.__name__
    wrong_bool = isinstance(value, bool) and bool not in accepted
    if not isinstance(value, accepted) or wrong_bool:
        raise ConfigError(f"{where}: {key} should be {name}, got {value!r}")
    if is_list and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} should be a list of names, got {value!r}")
    return value


def _flags_given(argv: list[str]) -> set[str]:
    """Setting names given on the command line (`--name value` or `--name=value`)."""
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def _retire(name: str, where: str) -> None:
    logger.warning("%s: %s is no longer a setting (%s); ignored", where, name, RETIRED[name])


def _without_retired_flags(argv: list[str]) -> list[str]:
    """argv less the retired settings' flags (`--name value` or `--name=value`)."""
    kept, index = [], 0
    while index < len(argv):
        arg = argv[index]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name not in RETIRED:
            kept.append(arg)
            index += 1
            continue
        _retire(name, f"--{name}")
        index += 1 if "=" in arg else 2
    return kept


def _without_none_values(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv less `--name none` (or `null`) of the settings that may be None, and their names:
    argparse would read the word as a value of the setting's type."""
    kept, emptied, index = [], [], 0
    while index < len(argv):
        name, _, value = argv[index][2:].partition("=")
        inline = bool(value)
        if not inline and index + 1 < len(argv):
            value = argv[index + 1]
        place = FIELDS.get(name) if argv[index].startswith("--") else None
        nullable = place is not None and type(None) in typing.get_args(place.type)
        if nullable and value.lower() in ("none", "null"):
            emptied.append(name)
            index += 1 if inline else 2
            continue
        kept.append(argv[index])
        index += 1
    return kept, emptied


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """`--config recipe.yaml` (optional) then `--key value` overrides -> TrainConfig.

    Every mistake is a `ConfigError` naming the flag, or the recipe file and line when the
    recipe holds the wrong key or value.
    """
    argv = _without_retired_flags(list(sys.argv[1:] if argv is None else argv))
    argv, emptied = _without_none_values(argv)
    parser = HfArgumentParser(TrainFlags)
    parser.add_argument("--config", default=None, help="YAML recipe; flags override it")
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("-")] or unknown
        raise ConfigError(
            f"unknown flag {flags[0]!r} on the command line (the settings are in "
            "ppi_dist/training/config.py, or see --help)"
        )
    recipe: dict = {}
    lines: dict[str, int] = {}
    path = None
    if known.config is not None:
        path = Path(known.config)
        recipe, lines = _recipe_with_lines(path)
        for key in [key for key in recipe if key in RETIRED]:
            _retire(key, f"{path}:{lines.get(key, '?')}")
            del recipe[key]
        for key in recipe:
            where = f"{path}:{lines.get(key, '?')}"
            if key not in FIELDS:
                raise ConfigError(
                    f"{where}: unknown key {key!r} (see ppi_dist/training/config.py for the "
                    "settings)"
                )
            recipe[key] = _check_type(key, recipe[key], where)
        parser.set_defaults(**recipe)
    parser.set_defaults(**dict.fromkeys(emptied))
    try:
        flags = parser.parse_args_into_dataclasses(args=argv)[0]
        return TrainConfig.from_dict(dataclasses.asdict(flags))
    except (ValueError, TypeError) as error:
        # Blame the recipe only for a key it holds that no flag overrode.
        from_recipe = set(recipe) - _flags_given(argv)
        bad = next((k for k in from_recipe if k in str(error)), None)
        if path is not None and bad is not None:
            raise ConfigError(f"{path}:{lines.get(bad, '?')}: {error}") from None
        raise ConfigError(str(error)) from None
