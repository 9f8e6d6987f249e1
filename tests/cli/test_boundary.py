"""The command lines' error boundary: a user error is one line naming the file or flag, exit
2, no traceback (`--debug` shows it); a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ppi_dist.cli import audit, predict, push, report
from ppi_dist.cli.boundary import EXIT_USER_ERROR, run_tool
from ppi_dist.cli.main import COMMANDS
from ppi_dist.cli.main import main as ppi_dist_main
from ppi_dist.hub.folder import save_for_hub
from tests.helpers import PROCESS_LIMIT_S, REPO, tiny_model


def _one_line_error(code: int, stderr: str, *needles: str) -> None:
    assert code == EXIT_USER_ERROR, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line, line


def _in_process(capsys, main, *args: str) -> tuple[int, str]:
    """A command's `main` in this process, as its script runs it: (exit status, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


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


def test_predict_user_errors(tmp_path, capsys):
    folder = save_for_hub(tiny_model(), tmp_path / "model")
    fasta, new = str(tmp_path / "p.fasta"), str(tmp_path / "new.tsv")
    (tmp_path / "p.fasta").write_text(">A\nMKV\n")
    (tmp_path / "out.tsv").write_text("earlier\n")
    common = ["--model", str(folder), "--no_progress", "--fasta", fasta]
    run = predict.main
    out = str(tmp_path / "out.tsv")
    _one_line_error(
        *_in_process(capsys, run, *common, "--out", out), "out.tsv exists", "--overwrite"
    )
    _one_line_error(*_in_process(capsys, run, *common, "--out", new), "no pairs to score")
    threshold = ["--threshold", "1.7"]
    _one_line_error(*_in_process(capsys, run, *common, "--out", new, *threshold), "--threshold")
    head = folder / "secai_head.safetensors"
    head.write_bytes(head.read_bytes()[:-8])
    _one_line_error(*_in_process(capsys, run, *common, "--out", new), str(head))


@pytest.mark.multiprocess
def test_a_real_process_prints_one_line_and_debug_the_traceback(tmp_path):
    """What users see from a shell: the old spelling and `ppi-dist`, one line and exit 2;
    `--debug` shows the traceback."""
    missing = str(tmp_path / "nope.tsv")

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, *args, "--train", missing, "--test", missing]
        return subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=PROCESS_LIMIT_S
        )

    for spelling in (["-m", "ppi_dist.audit"], ["-m", "ppi_dist.cli", "audit"]):
        result = run(*spelling)
        _one_line_error(result.returncode, result.stderr, "nope.tsv: file not found")
    debug = run("-m", "ppi_dist.audit", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_report_push_audit_user_errors(tmp_path, capsys):
    missing = str(tmp_path / "nope.tsv")
    out = str(tmp_path / "r")
    arguments = ["--predictions", missing, "--out", out, "--threshold", "0.5"]
    _one_line_error(*_in_process(capsys, report.main, *arguments), "nope.tsv")
    pushed = _in_process(capsys, push.main, str(tmp_path), "user/repo")
    _one_line_error(*pushed, "save the model first")
    audited = _in_process(capsys, audit.main, "--train", missing, "--test", missing)
    _one_line_error(*audited, "nope.tsv")


def test_one_command_lists_and_runs_every_subcommand(capsys):
    assert ppi_dist_main([]) == 2
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)
    assert ppi_dist_main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    for name in COMMANDS:  # each command module exists and parses its own --help
        with pytest.raises(SystemExit) as done:
            ppi_dist_main([name, "--help"])
        assert done.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name
