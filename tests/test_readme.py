"""README.md's commands stay true, and the front pages keep their shape.

Every command in README.md's fenced code blocks (`bash`/`sh` blocks; `text` blocks are
output) and every inline code span that is a command is parsed by the package's own
parsers without running it: the trainer's flags through `training.recipes.load_config`
(`ppi-dist train`, `ppi_dist/train.py` under `accelerate launch` or `sbatch`, and
`scripts/train_default.sh`), each other subcommand's through its `cli.<name>.build_parser`,
`accelerate launch`'s through Accelerate's own. A renamed or removed flag fails here. Every
script, recipe, config and document the README names must exist, every link and anchor must
resolve, and the cheap commands (`ppi-dist parameters ...`, `--help`) run for real. A command
of a kind this file does not know fails too, so a new one is checked once it is added here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

import ppi_dist
from ppi_dist.cli.main import COMMANDS
from ppi_dist.cli.main import main as ppi_dist_main
from ppi_dist.errors import ConfigError
from ppi_dist.training.recipes import load_config
from tests.helpers import REPO

README = REPO / "README.md"
BENCHMARKS = REPO / "BENCHMARKS.md"
MAX_LINES = 170  # README.md has fewer
MAX_WIDTH = 100
COMMAND_BLOCKS = {"", "bash", "sh", "shell", "console"}
# Folders of the repository whose files the README may name; each named one must exist.
REPO_FOLDERS = (
    "scripts",
    "recipes",
    "docs",
    "accelerate_configs",
    "launch",
    "requirements",
    "benchmarks",
    "ppi_dist",
    "tests",
)
REPO_PATH = re.compile(rf"(?<![\w./-])(?:{'|'.join(REPO_FOLDERS)})/[\w./-]*")
# Flags that stand for any setting in the prose, not one of them.
PLACEHOLDER_FLAGS = {"--key"}
# `python -m ppi_dist.X`: the command X runs (the older spellings).
OLD_SPELLINGS = {"model": "parameters"}
# Scripts whose extra arguments go to the trainer, with what they put before them.
TRAINER_SCRIPTS = {
    "scripts/train_default.sh": ["--config", "recipes/synthetic_tiny.yaml"],
    "launch/slurm_zero2.sbatch": [],
    "launch/torchrun.sh": [],
}
PLAIN_SCRIPTS = {"scripts/setup.sh", "scripts/test.sh", "scripts/lock.sh"}
PLAIN_SCRIPTS |= {"scripts/test_newest.sh"}


# ---- reading the markdown ----------------------------------------------------------------


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    for match in re.finditer(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", text, re.M | re.S):
        yield match.group(1).strip(), match.group(2)


def block_commands(text: str) -> list[str]:
    """The commands of the README's shell blocks, continuation lines joined."""
    found = []
    for info, body in fenced_blocks(text):
        if info not in COMMAND_BLOCKS:
            continue
        for line in re.sub(r"\\\n", " ", body).splitlines():
            if shlex.split(line, comments=True):
                found.append(line)
    return found


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.M | re.S)


def inline_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks, line breaks inside them made spaces."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose(text))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """Relative link targets: inline `[text](target)` and reference `[name]: target`."""
    text = prose(path.read_text())
    found = re.findall(r"\]\(([^)\s]+)\)", text)
    found += re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
    return [target for target in found if not re.match(r"[a-z]+://", target)]


# ---- parsing commands without running them ------------------------------------------------


def exact_flags(args: list[str], options: set[str] | dict, where: str) -> None:
    """Every `--flag` given is one the parser declares by that very name: argparse would also
    take an abbreviation, so a flag renamed to a longer name would still parse."""
    for word in args:
        flag = word.split("=", 1)[0]
        assert not flag.startswith("--") or flag in options, f"{where}: no flag {flag}"


def trainer_options() -> set[str]:
    from ppi_dist.training.config import FIELDS

    return {f"--{name}" for name in FIELDS} | {"--config", "--help"}


def cli_parser(command: str) -> argparse.ArgumentParser:
    assert command in COMMANDS, f"ppi-dist has no command {command!r}"
    return importlib.import_module(f"ppi_dist.cli.{command}").build_parser()


def parse_trainer(args: list[str]) -> None:
    exact_flags(args, trainer_options(), "the trainer")
    if "--help" in args:
        return  # the help is run for real in test_help_runs
    load_config(args)


def parse_ppi_dist(args: list[str]) -> None:
    """`ppi-dist COMMAND args`: the command's own parser, or the trainer's."""
    assert args, "ppi-dist with no command"
    command, rest = args[0], args[1:]
    if command == "train":
        parse_trainer(rest)
    elif rest and "--help" not in rest:
        parser = cli_parser(command)
        exact_flags(rest, parser._option_string_actions, f"ppi-dist {command}")
        parser.parse_args(rest)
    else:
        cli_parser(command)  # a bare `ppi-dist split` in the prose: the command exists


def parse_module(module: str, args: list[str]) -> None:
    """`python -m MODULE args` (or `accelerate launch -m MODULE args`)."""
    assert module.startswith("ppi_dist"), f"not one of ours: python -m {module}"
    name = module.removeprefix("ppi_dist").removeprefix(".")
    if name == "cli":
        parse_ppi_dist(args)
    else:
        assert importlib.util.find_spec(module), f"no module {module}"
        parse_ppi_dist([OLD_SPELLINGS.get(name, name), *args])


def parse_script(script: str, args: list[str]) -> None:
    """`python SCRIPT`, `bash SCRIPT`, `sbatch SCRIPT`: the script exists; the trainer's
    arguments parse."""
    assert (REPO / script).is_file(), f"{script} is not in the repository"
    if script == "ppi_dist/train.py":
        parse_trainer(args)
    elif script in TRAINER_SCRIPTS:
        parse_trainer([*TRAINER_SCRIPTS[script], *args])
    else:
        assert script in PLAIN_SCRIPTS, f"test_readme.py does not know what {script} takes"


def parse_accelerate(args: list[str]) -> None:
    from accelerate.commands.launch import launch_command_parser

    assert args[0] == "launch", f"accelerate {args[0]}"
    parser = launch_command_parser()
    launch = parser.parse_args(args[1:])
    own = args[1 : args.index(launch.training_script)]
    exact_flags(own, parser._option_string_actions, "accelerate launch")
    if launch.config_file is not None:
        assert (REPO / launch.config_file).is_file(), f"{launch.config_file} is missing"
    if launch.module:
        parse_module(launch.training_script, launch.training_script_args)
    else:
        parse_script(launch.training_script, launch.training_script_args)


def parse_pip(args: list[str]) -> None:
    """`pip install -e '.[extra,...]'`: each extra is one the package declares."""
    extras = set(importlib.metadata.metadata("ppi_dist").get_all("Provides-Extra") or [])
    assert args[0] == "install", f"pip {args[0]}"
    for word in args[1:]:
        match = re.fullmatch(r"(?:\.|ppi_dist)\[([\w,-]+)\]", word)
        if match:
            for extra in match.group(1).split(","):
                assert extra in extras, f"pyproject.toml has no extra {extra!r}"


def parse_command(words: list[str]) -> None:
    """Parse one README command line (a list of shell words) with the parser that will read
    it; assert on anything unknown."""
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]  # environment settings before the command
    program, args = words[0], words[1:]
    if program == "ppi-dist":
        parse_ppi_dist(args)
    elif program in ("python", "python3") and args[:1] == ["-m"]:
        parse_module(args[1], args[2:])
    elif program in ("python", "python3", "bash"):
        parse_script(args[0], args[1:])
    elif program == "sbatch":
        script = next(word for word in args if not word.startswith("-") and "/" in word)
        parse_script(script, args[args.index(script) + 1 :])
    elif program == "accelerate":
        parse_accelerate(args)
    elif program == "pip":
        parse_pip(args)
    elif program == "source":
        assert args == [".venv/bin/activate"], f"source {args}"  # what setup.sh makes
    else:
        raise AssertionError(f"test_readme.py does not know how to check {program!r}")


COMMAND_START = re.compile(r"(ppi-dist|python3? |bash |accelerate launch|sbatch|pip install)")


def inline_commands(text: str) -> list[str]:
    """Inline spans that are whole commands (not `...`-elided ones)."""
    return [span for span in inline_spans(text) if COMMAND_START.match(span) and "..." not in span]


def all_options() -> set[str]:
    """Every flag any of the README's parsers accepts."""
    from accelerate.commands.launch import launch_command_parser

    options = trainer_options()
    for command in COMMANDS:
        if command != "train":
            options |= set(cli_parser(command)._option_string_actions)
    options |= set(launch_command_parser()._option_string_actions)
    return options


# ---- the tests ----------------------------------------------------------------------------

TEXT = README.read_text()


def command_id(line: str) -> str:
    return " ".join(shlex.split(line, comments=True)[:4])


@pytest.mark.parametrize("line", block_commands(TEXT), ids=command_id)
def test_each_command_of_the_readme_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # recipes and configs are named from the repository root
    parse_command(shlex.split(line, comments=True))


@pytest.mark.parametrize("span", inline_commands(TEXT), ids=command_id)
def test_each_inline_command_parses(span: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    parse_command(shlex.split(span))


def test_every_flag_in_the_prose_exists() -> None:
    """`--lora_layers N` in a sentence names a flag some parser accepts; after a command
    (`predict --prior 0.01`) it must be that command's."""
    known = all_options()
    for span in inline_spans(TEXT):
        words = span.split()
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        if words[0] in COMMANDS and words[0] != "train":
            own = set(cli_parser(words[0])._option_string_actions)
            assert set(flags) <= own, f"`{span}`: not a flag of ppi-dist {words[0]}"
        for flag in flags:
            assert flag in known or flag in PLACEHOLDER_FLAGS, f"`{span}`: no flag {flag}"


def test_a_renamed_flag_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is not vacuous: a flag that no parser knows stops it."""
    monkeypatch.chdir(REPO)
    for line in (
        "ppi-dist train --config recipes/synthetic_tiny.yaml --lora_layerz 8",
        "ppi-dist train --config recipes/synthetic_tiny.yaml --lora_layer 8",  # abbreviated
        "ppi-dist split --pairs p.tsv --out_d split/",
        "ppi-dist predict --model m --fasta f.fasta --out o.tsv --top_kk 3",
        "accelerate launch --config_file accelerate_configs/zero2.yaml ppi_dist/train.py --x 1",
        "bash scripts/train_default.sh --interactions pooled",
    ):
        with pytest.raises((ConfigError, AssertionError)):
            parse_command(shlex.split(line))
    assert "--lora_layerz" not in all_options()


def test_every_path_the_readme_names_exists() -> None:
    for path in sorted(set(REPO_PATH.findall(TEXT))):
        assert (REPO / path.rstrip(".")).exists(), f"README.md names {path}, not in the repo"


def test_every_name_of_the_api_the_readme_uses_exists() -> None:
    for name in sorted(set(re.findall(r"\bppi_dist\.([A-Za-z_]\w*)", TEXT))):
        found = hasattr(ppi_dist, name) or importlib.util.find_spec(f"ppi_dist.{name}")
        assert found, f"README.md uses ppi_dist.{name}, which does not exist"


@pytest.mark.parametrize("document", ["README.md", "BENCHMARKS.md", "docs/design.md"])
def test_links_and_anchors_resolve(document: str) -> None:
    path = REPO / document
    for target in links(path):
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{document} links to {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{document} links to {target}: no such heading"


def test_parameters_runs_as_the_readme_shows(capsys: pytest.CaptureFixture) -> None:
    """The cheap commands run for real: `ppi-dist parameters` counts on the meta device."""
    lines = [c for c in block_commands(TEXT) + inline_commands(TEXT) if " parameters " in c]
    assert lines, "the README shows a `ppi-dist parameters` command"
    for line in lines:
        assert ppi_dist_main(shlex.split(line)[1:]) == 0
        assert "trainable total" in capsys.readouterr().out


def test_help_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ppi-dist train --help` (and any other `--help` the README shows) prints and exits 0."""
    monkeypatch.chdir(REPO)
    lines = [c for c in block_commands(TEXT) + inline_commands(TEXT) if "--help" in c.split()]
    assert lines
    for line in lines:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            ppi_dist_main(shlex.split(line)[1:])
        assert stop.value.code in (0, None) and "--lora_layers" in out.getvalue(), line


def test_readme_is_a_front_page() -> None:
    lines = TEXT.splitlines()
    assert len(lines) < MAX_LINES, f"README.md has {len(lines)} lines; keep it under {MAX_LINES}"
    wide = [i for i, line in enumerate(lines, 1) if len(line) > MAX_WIDTH]
    assert not wide, f"README.md lines over {MAX_WIDTH} characters: {wide}"


def test_benchmarks_hold_results_not_history() -> None:
    """No commit hashes and no issue numbers: BENCHMARKS.md says what holds now
    (docs/benchmarks-history.md keeps how it got there)."""
    text = BENCHMARKS.read_text()
    hashes = re.findall(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", text)
    assert not hashes, f"commit hashes in BENCHMARKS.md: {hashes}"
    issues = re.findall(r"\bissues?\s*#?\d+|(?<![\w&/])#\d+\b", text, re.I)
    assert not issues, f"issue references in BENCHMARKS.md: {issues}"
    dated = [h for h in re.findall(r"^#+ .*$", text, re.M) if re.search(r"\b20\d\d-\d\d", h)]
    assert not dated, f"dated headings in BENCHMARKS.md: {dated}"
