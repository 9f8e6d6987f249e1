"""Files on disk, written and read so that nothing is half-written or silently wrong.

- `write_text_atomic`: a file appears whole or not at all (written beside, then renamed).
- `read_json`, `read_safetensors`: a damaged or missing file is an error naming it.
- `acquire_lock`: one process at a time holds a folder (or an output), by an advisory
  `fcntl.flock` on a lock file holding the holder's pid, host and start time. The OS drops
  the lock when its process dies, so a lock file left by a killed process is stale, taken
  over, and reported.
- `safe_join`: a file name that cannot leave its folder.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ppi_dist.errors import CorruptFileError, RunFolderError

logger = logging.getLogger(__name__)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, renamed into place: a
    reader (another rank, a resumed run) sees the old file or the new one, never half."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.replace(path)


def read_json(path: str | Path) -> dict:
    """A JSON object from `path`; unreadable, truncated or not an object: CorruptFileError."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path}: expected a JSON object")
    return value


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file`, with errors that name the file.

    A missing file is a FileNotFoundError; a truncated or overwritten one (bad header, short
    data) a `CorruptFileError`; both say which file, so the user knows what to replace.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (an incomplete copy or download?)")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CorruptFileError(
            f"{path}: not a readable safetensors file ({error}); the file is truncated or "
            "damaged: copy or download it again"
        ) from error


def safe_join(folder: str | Path, name: str) -> Path:
    """`folder / name`, refusing names that leave `folder` (absolute, `..`, symlinks out)."""
    root = Path(folder).resolve()
    if not name or Path(name).is_absolute() or "\\" in name:
        raise ValueError(f"{name!r}: not a relative file name")
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{name!r} leaves the folder {root}")
    return target


# ---- locks ----------------------------------------------------------------------------


class RunLock:
    """An advisory lock on a folder; `release()` (or exit, or the process dying) frees it."""

    def __init__(self, path: Path | None, handle=None) -> None:
        self.path, self._handle = path, handle
        if handle is not None:
            atexit.register(self.release)

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            self.path.unlink(missing_ok=True)  # unlink while locked: no one holds a dead inode
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def acquire_lock(path: str | Path, *, what: str = "run") -> RunLock:
    """Hold `path` (created if needed) for this process, or raise RunFolderError naming the
    holder. A lock file whose holder died is stale: it is taken over with a warning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        handle = open(path, "a+")  # noqa: SIM115 (kept open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = _holder(path)
            raise RunFolderError(
                f"{path.parent}: in use by another {what} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}; lock file "
                f"{path}); wait for it to finish, or choose another folder"
            ) from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file as we opened it: try again
            handle.close()
            continue
        stale = _holder(path)
        if stale:
            logger.warning(
                "%s: stale lock of pid %s on %s (since %s) taken over; that process is gone",
                path,
                stale.get("pid"),
                stale.get("host"),
                stale.get("started"),
            )
        handle.seek(0)
        handle.truncate()
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "what": what,
        }
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        return RunLock(path, handle)
    raise RunFolderError(f"{path}: could not take the lock (it keeps changing hands)")
