"""Every error ppi_dist raises on purpose, in one module.

Two families:

- `UserError` (a `ValueError`): what the user gave is wrong or missing: a flag, a recipe
  value, a pair file, a FASTA record, a model folder, an output that exists. Its message
  names the file, line, field or flag and says what to do. The command line tools
  (`ppi_dist.cli.boundary.run_tool`) print it as one line and exit 2, with no traceback
  (`--debug` or PPI_DIST_DEBUG=1 shows the traceback).
- `InternalError` (a `RuntimeError`): raised and handled by ppi_dist itself (a stop that
  was asked for, a row problem before its location is known), or a guard that refuses to go
  on (trainable weights no longer finite). When one reaches the user it keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

# ---- the user's to fix ----------------------------------------------------------------


class UserError(ValueError):
    """A problem with what the user gave: the message says which file or flag, and what to do."""


class ConfigError(UserError):
    """A recipe key, flag or value that is wrong, with the file and line it came from."""


class DataError(UserError):
    """Bad input data, located: `file:line: field 'name': problem`.

    `line` is the physical line of a text file (header = 1); `row` the 0-based row index of
    a parquet file or a remote dataset (printed as `file: row N`).
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ):
        self.path, self.line, self.row = str(path), line, row
        self.field, self.problem = field, problem
        where = str(path)
        if line is not None:
            where += f":{line}"
        elif row is not None:
            where += f": row {row}"
        what = f"field {field!r}: {problem}" if field else problem
        super().__init__(f"{where}: {what}")


class MissingToolError(UserError):
    """An optional tool (MMseqs2, KaHIP) is not installed; the message says how to install it."""


class InvalidSequenceError(UserError):
    """A sequence with a letter outside the ESM-2 alphabet, or no residues at all."""


class CorruptFileError(UserError):
    """A file that exists but cannot be read as what it should be (truncated, overwritten)."""


class RunFolderError(UserError):
    """The output folder holds another run, or another process is using it."""


class ProgressMismatchError(UserError):
    """`predict`'s progress files belong to another run (inputs, model or options)."""


class OutputError(UserError):
    """A file could not be written (disk full, read-only folder, no permission): the message
    names the path, the OS's reason and what to do; what was written before is kept."""


class HubUnreachableError(UserError):
    """The Hugging Face Hub could not be reached or refused the credentials."""


class CacheTooLargeError(UserError):
    """The states would exceed the in-memory limit; build into a folder instead."""


class NonFiniteLossError(UserError):
    """The loss was NaN or infinite on some rank; the message says what to change."""


# ---- raised and handled by ppi_dist ---------------------------------------------------


class InternalError(RuntimeError):
    """Raised by ppi_dist for itself: control flow, or a guard against a state it must not
    write (see the module docstring)."""


class Stopped(InternalError):
    """A stop was requested (SIGTERM/SIGINT) and the work stopped where it can resume."""


class Preempted(Stopped):
    """Stopped between training steps; the run's state is in a checkpoint."""


class ScoringInterrupted(Stopped):
    """Stopped between scoring chunks (every rank together)."""


class NonFiniteWeightsError(InternalError):
    """Trainable weights are NaN or infinite: no checkpoint is written from them."""


class BadRow(InternalError):
    """A row-level problem of a pair file, found before its location is known.

    Never leaves `ppi_dist.data.pairs`: the pair source turns it into a located `DataError`
    or counts it (`skip_bad_rows`). `reason` is the key it is counted under.
    """

    def __init__(self, field: str | None, problem: str, reason: str):
        super().__init__(problem)
        self.field, self.problem, self.reason = field, problem, reason
