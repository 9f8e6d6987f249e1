"""One error boundary for the command line tools.

    main = command(build_parser, run)   # a command's `main(argv) -> exit status`

A user error (a bad flag or file, a missing or damaged model file, an existing output, an
unreachable Hub) prints ONE line, `error: <what, naming the file or flag>`, on stderr and
exits with status 2, with no traceback. `--debug` anywhere on the command line, or the
environment variable PPI_DIST_DEBUG=1, re-raises it with its traceback instead. Anything
else (a bug) keeps its traceback. argparse's own usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from huggingface_hub import errors as hub_errors
from safetensors import SafetensorError

from ppi_dist.errors import UserError
from ppi_dist.files import WRITE_ERRNOS, write_failure

EXIT_USER_ERROR = 2


# What the user is to fix: our own errors, a damaged safetensors file, the OS's reasons
# about a path, and the Hub's (offline, unknown repo or revision, bad repo id).
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,  # ConfigError, DataError, CorruptFileError, RunFolderError, ... are UserErrors
    SafetensorError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    hub_errors.HfHubHTTPError,
    hub_errors.LocalEntryNotFoundError,
    hub_errors.HFValidationError,
    hub_errors.OfflineModeIsEnabled,
)


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("PPI_DIST_DEBUG", "") not in ("", "0")


def run_tool(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    *,
    keep_debug_flag: bool = False,
) -> int:
    """Run `main(argv)`; user errors -> one line on stderr + exit status 2.

    `--debug` is removed from argv before `main` sees it, unless `keep_debug_flag` (the
    trainer's parser has a `debug` field). Returns `main`'s status (None counts as 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if not keep_debug_flag:
        argv = [a for a in argv if a != "--debug"]
    try:
        return main(argv) or 0
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        # A full disk or read-only folder that no command turned into its OutputError: still
        # the user's to fix, and the OS's file name (if any) is what to look at.
        if debug or error.errno not in WRITE_ERRNOS:
            raise
        failure = write_failure(error, error.filename or "an output file")
        print(f"error: {one_line(failure)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130


def one_line(error: BaseException) -> str:
    """The error's message on one line; the file name is kept when the error has one."""
    if isinstance(error, OSError) and error.filename and str(error.filename) not in str(error):
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def command(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int],
    *,
    log: bool = False,
) -> Callable[[Sequence[str] | None], int]:
    """A command's `main(argv)`: parse its flags and run it inside `run_tool`. `log`: show
    INFO messages (what `predict` and `push` report as they go)."""

    def main(argv: Sequence[str] | None = None) -> int:
        def parse_and_run(args: list[str]) -> int:
            flags = build_parser().parse_args(args)
            if log:
                logging.basicConfig(
                    level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
                )
            return run(flags)

        return run_tool(parse_and_run, argv)

    return main
