"""Issue 14 items 6-7: user errors are one line naming the file or flag, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ppi_dist.cli import EXIT_USER_ERROR, run_tool
from ppi_dist.config import ConfigError, load_config
from ppi_dist.hub import save_for_hub
from tests.conftest import REPO, tiny_model


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"ppi_dist.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line, line


def test_boundary_prints_one_line_and_debug_reraises(capsys, monkeypatch):
    def bad(argv):
        raise FileExistsError("out.tsv exists; pass --overwrite to replace it")

    assert run_tool(bad, []) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: out.tsv exists; pass --overwrite to replace it\n"
    with pytest.raises(FileExistsError):
        run_tool(bad, ["--debug"])
    monkeypatch.setenv("PPI_DIST_DEBUG", "1")
    with pytest.raises(FileExistsError):
        run_tool(bad, [])


def test_bugs_keep_their_traceback():
    def bug(argv):
        raise KeyError("internal")

    with pytest.raises(KeyError):
        run_tool(bug, [])


def test_predict_user_errors(tmp_path):
    folder = save_for_hub(tiny_model(), tmp_path / "model")
    (tmp_path / "p.fasta").write_text(">A\nMKV\n")
    (tmp_path / "out.tsv").write_text("earlier\n")
    common = ["--model", str(folder), "--no_progress"]
    _one_line_error(
        _run(
            "predict",
            *common,
            "--fasta",
            str(tmp_path / "p.fasta"),
            "--out",
            str(tmp_path / "out.tsv"),
        ),
        "out.tsv exists",
        "--overwrite",
    )
    _one_line_error(
        _run(
            "predict",
            *common,
            "--fasta",
            str(tmp_path / "p.fasta"),
            "--out",
            str(tmp_path / "new.tsv"),
        ),
        "no pairs to score",
    )
    new = str(tmp_path / "new.tsv")
    _one_line_error(
        _run(
            "predict",
            *common,
            "--fasta",
            str(tmp_path / "p.fasta"),
            "--out",
            new,
            "--threshold",
            "1.7",
        ),
        "--threshold",
    )
    head = folder / "secai_head.safetensors"
    head.write_bytes(head.read_bytes()[:-8])
    _one_line_error(
        _run(
            "predict",
            *common,
            "--fasta",
            str(tmp_path / "p.fasta"),
            "--out",
            str(tmp_path / "new.tsv"),
        ),
        str(head),
    )
    debug = _run(
        "predict",
        *common,
        "--fasta",
        str(tmp_path / "p.fasta"),
        "--out",
        str(tmp_path / "new.tsv"),
        "--debug",
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_report_push_audit_user_errors(tmp_path):
    missing = str(tmp_path / "nope.tsv")
    _one_line_error(
        _run(
            "report", "--predictions", missing, "--out", str(tmp_path / "r"), "--threshold", "0.5"
        ),
        "nope.tsv",
    )
    _one_line_error(_run("push", str(tmp_path), "user/repo"), "save the model first")
    _one_line_error(_run("audit", "--train", missing, "--test", missing), "nope.tsv")


def test_unknown_flag_is_named_and_not_blamed_on_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 2\nlora_r: 0\n")
    with pytest.raises(ConfigError, match="unknown flag '--no_such_flag'") as error:
        load_config(["--config", str(recipe), "--no_such_flag", "3"])
    assert "recipe.yaml" not in str(error.value)
    with pytest.raises(ConfigError, match="unknown flag '--no_such_flag'"):
        load_config(["--no_such_flag", "3"])
    # A bad value in the recipe names its line; the same value given as a flag does not.
    with pytest.raises(ConfigError, match=r"recipe\.yaml:2: lora_r must be at least 1"):
        load_config(["--config", str(recipe)])
    recipe.write_text("epochs: 2\n")
    with pytest.raises(ConfigError, match=r"^head_dropout must lie in") as error:
        load_config(["--config", str(recipe), "--head_dropout", "1.5"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora_r", "0"], "lora_r must be at least 1"),
        (["--head_dropout", "1.5"], "head_dropout must lie in [0, 1)"),
        (["--max_tokens", "100"], "max_tokens=100 cannot hold one pair"),
        (["--learning_rate_head=-1e-3"], "learning_rate_head must be a positive number"),
        (["--learning_rate_lora", "0"], "learning_rate_lora must be a positive number"),
        (["--max_steps", "-1"], "max_steps must be at least 1"),
        (["--keep_checkpoints", "0"], "keep_checkpoints must be at least 1"),
    ],
)
def test_bad_values_are_config_errors(flags, message):
    with pytest.raises(ConfigError) as error:
        load_config(flags)
    assert message in str(error.value)
