"""One error boundary for the command line tools.

    def main(argv=None) -> int:
        return run_tool(_main, argv)

A user error (a bad flag or file, a missing or damaged model file, an existing output, an
unreachable Hub) prints ONE line, `error: <what, naming the file or flag>`, on stderr and
exits with status 2, with no traceback. `--debug` anywhere on the command line, or the
environment variable PPI_DIST_DEBUG=1, re-raises it with its traceback instead. Anything
else (a bug) keeps its traceback. argparse's own usage errors also exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from ppi_dist.errors import UserError

EXIT_USER_ERROR = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's to fix (imported lazily: some are heavy)."""
    from safetensors import SafetensorError

    from ppi_dist.data import DataError
    from ppi_dist.sequences import InvalidSequenceError

    types: list[type[BaseException]] = [
        UserError,  # ConfigError, CorruptFileError, RunFolderError, ... are UserErrors
        DataError,
        InvalidSequenceError,
        SafetensorError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ]
    try:  # Hub: offline, unknown repo or revision, bad repo id
        from huggingface_hub import errors as hub

        types += [
            hub.HfHubHTTPError,
            hub.LocalEntryNotFoundError,
            hub.HFValidationError,
            hub.OfflineModeIsEnabled,
        ]
    except (ImportError, AttributeError):
        pass
    return tuple(types)


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("PPI_DIST_DEBUG", "") not in ("", "0")


def run_tool(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    *,
    extra_user_errors: tuple[type[BaseException], ...] = (),
    keep_debug_flag: bool = False,
) -> int:
    """Run `main(argv)`; user errors -> one line on stderr + exit status 2.

    `--debug` is removed from argv before `main` sees it, unless `keep_debug_flag` (the
    trainer's parser has a `debug` field). `extra_user_errors`: more exception types a tool
    counts as user errors (the trainer's NonFiniteLossError, say). Returns `main`'s status
    (None counts as 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if not keep_debug_flag:
        argv = [a for a in argv if a != "--debug"]
    try:
        return main(argv) or 0
    except (*user_error_types(), *extra_user_errors) as error:
        if debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
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
