"""What every command-line case asserts: exit 2, ONE line `error: ...` naming the file, flag or
field, no traceback; and the fault injections the cases share."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ppi_dist.cli.boundary import EXIT_USER_ERROR
from tests.helpers import PROCESS_LIMIT_S, REPO


def refused(code: int, stderr: str, *needles: str) -> str:
    """Exit 2, no traceback, the last stderr line is `error: ...` holding every needle;
    returns that line."""
    assert code == EXIT_USER_ERROR, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def in_process(capsys, main: Callable, *args: str) -> tuple[int, str]:
    """A command's `main(argv)` in this process: (exit status, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def shell(
    *args: object, env: dict | None = None, timeout: int = PROCESS_LIMIT_S
) -> subprocess.CompletedProcess:
    """`python ARGS` as a user's shell runs it (a few per command: each costs seconds)."""
    command = [sys.executable, *map(str, args)]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


def failing_open(real_open: Callable, under: Path, code: int) -> Callable:
    """`open` that raises OSError(`code`) for files opened for writing under `under`: a full
    disk (ENOSPC) or a read-only folder (EROFS), injected into one module."""
    reason = {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system"}

    def fake(file, mode="r", *args, **kwargs):
        writing = any(flag in mode for flag in "wax+")
        if writing and Path(file).resolve().is_relative_to(under.resolve()):
            raise OSError(code, reason[code], str(file))
        return real_open(file, mode, *args, **kwargs)

    return fake
