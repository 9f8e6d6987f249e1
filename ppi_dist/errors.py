"""Errors that are the user's to fix (a flag, a file, an existing output), not bugs.

The command line tools (`ppi_dist.cli.run_tool`) print these as one line and exit 2, with
no traceback; `--debug` or `PPI_DIST_DEBUG=1` shows the traceback. A `UserError` is a
`ValueError`, so callers that caught `ValueError` before still catch it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with what the user gave: message says which file or flag, and what to do."""


class CorruptFileError(UserError):
    """A file that exists but cannot be read as what it should be (truncated, overwritten)."""
