"""Files on disk, written and read so that nothing is half-written or silently wrong.

- `write_text_atomic`: a file appears whole or not at all (written beside, then renamed).
- `read_json`, `read_safetensors`: a damaged or missing file is an error naming it.
- `acquire_lock`: one process at a time holds a folder (or an output), by an advisory
  `fcntl.flock` on a lock file holding the holder's pid, host and start time. The OS drops
  the lock when its process dies, so a lock file left by a killed process is stale, taken
  over, and reported.
- `safe_join`: a file name that cannot leave its folder.
- `writing_to`: a full disk or read-only folder while writing an output becomes one
  `OutputError` naming the path and what to do; `check_writable` finds out before the work;
  `save_safetensors` and `safetensors_writes` make safetensors' own write failures such
  OSErrors, naming the file.
- `remove_stale_partials`: temporary files that a killed or failed writer left.
- `write_manifest`, `verify_manifest`: the SHA-256 of every file of a folder (model folder,
  checkpoint), written last and checked on loading, so a changed file is named.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ppi_dist.errors import CorruptFileError, OutputError, RunFolderError

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, renamed into place: a
    reader (another rank, a resumed run) sees the old file or the new one, never half. A
    failed write (a full disk) removes its temporary file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "w") as handle:
            handle.write(text)
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the temporary files of `write_text_atomic` (`.NAME.PID.partial`) in `folder`
    whose process is gone (a kill, a crash) or is this one (no write of ours is under
    way when a command starts); returns them."""
    removed = []
    for path in sorted(Path(folder).glob(f".*{PARTIAL_SUFFIX}")):
        pid = path.name.removesuffix(PARTIAL_SUFFIX).rsplit(".", 1)[-1]
        if pid.isdigit() and not _running_elsewhere(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _running_elsewhere(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


# ---- writing outputs -------------------------------------------------------------------

# What the OS says when an output cannot be written through no fault of the code.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


def write_failure(error: OSError, path: str | Path, then: str = "") -> OutputError:
    """The one-line error for an output that could not be written: the path the OS names
    (else `path`), its reason and what to do."""
    where = error.filename or path
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free space on that disk or write to another folder"
    else:
        advice = "make the folder writable or write to another folder"
    return OutputError(f"{where}: cannot write ({reason}); {advice}{then}")


def check_output_folder(path: str | Path, flag: str, *, writable: bool = True) -> None:
    """Before any long work: `path`, the folder a command's `flag` writes into (made when
    missing), is no file, and (`writable`) the folder it is or will be made in can be
    written; else an `OutputError` naming the flag and the path, instead of a bare
    "[Errno 17] File exists" after the encoding."""
    path = Path(path)
    there = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not there.is_dir():
        where = "" if there == path else f"{there} "
        raise OutputError(
            f"{flag} {path}: {where}is a file, not a folder; give a folder (made if missing)"
        )
    if writable and not os.access(there, os.W_OK | os.X_OK):
        raise OutputError(
            f"{flag} {path}: {there} cannot be written (read-only or no permission); make "
            "it writable or give another folder"
        )


@contextmanager
def safetensors_writes(path: str | Path) -> Iterator[None]:
    """Inside: safetensors' report of a failed write (a full disk: "Error while serializing:
    I/O error: No space left on device (os error 28)", naming no file) is raised as the
    OSError it is, naming `path` (the file, or the folder a library writes) and keeping that
    text, so that `writing_to` and the error boundary say where and what to do."""
    try:
        yield
    except SafetensorError as error:
        found = re.search(r"os error (\d+)", str(error))
        if found is None:
            raise
        raise OSError(int(found.group(1)), str(error), str(path)) from error


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """`safetensors.torch.save_file`, a failed write naming `path` (`safetensors_writes`)."""
    with safetensors_writes(path):
        save_file(tensors, path)


def check_writable(folder: str | Path, then: str = "") -> Path:
    """Make `folder` (and its parents) and write a small file in it: a read-only folder or
    a full disk is an `OutputError` naming it now, before any long work."""
    folder = Path(folder)
    probe = folder / f".ppi_dist_probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "w") as handle:
            handle.write("probe\n")
        probe.unlink()
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        raise write_failure(error, folder, then) from error
    return folder


@contextmanager
def writing_to(path: str | Path, then: str = "") -> Iterator[None]:
    """Inside: an OSError of a full disk, quota, read-only file system or permission is an
    `OutputError` naming the file (or `path`, the output it was writing) and what to do;
    `then` is added (e.g. "; rerun the same command to resume")."""
    try:
        yield
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        raise write_failure(error, path, then) from error


# ---- manifests -------------------------------------------------------------------------

MANIFEST_NAME = "manifest.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path, patterns: list[str] | None = None) -> Path:
    """Write `folder/manifest.json`: the SHA-256 and size of every file under `folder`
    (those matching one of `patterns`, when given), written last, as a package's RECORD."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST_NAME or name.startswith(".") or "/." in name:
            continue
        if patterns is not None and not any(path.match(pattern) for pattern in patterns):
            continue
        files[name] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    manifest = folder / MANIFEST_NAME
    write_text_atomic(manifest, json.dumps({"algorithm": "sha256", "files": files}, indent=1))
    return manifest


def verify_manifest(
    folder: str | Path,
    what: str = "folder",
    *,
    warn_only: tuple[str, ...] = (),
    required: Collection[str] = (),
) -> bool:
    """Check every file `folder/manifest.json` lists; a missing or changed one is a
    `CorruptFileError` naming it, except files matching `warn_only` (text a person may edit,
    a model card): a warning. `required`: names the manifest must list (the folder's own
    files, which its writer always lists): one it leaves out is a `CorruptFileError` too,
    else that file could change unchecked. A folder without a manifest (written by a
    version before manifests) is not checked: False, with a warning."""
    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        logger.warning(
            "%s: no %s (an older version saved it); files not verified", folder, MANIFEST_NAME
        )
        return False
    files = read_json(manifest).get("files")
    if not isinstance(files, dict):
        raise CorruptFileError(f"{manifest}: no 'files' listed; the manifest is damaged")
    for name in required:
        if name not in files:
            raise CorruptFileError(
                f"{folder / name}: not listed in {manifest}, which lists every file of the "
                f"{what} when it is saved; copy or download the {what} again"
            )
    for name, entry in files.items():
        try:
            path = safe_join(folder, name)
        except ValueError as error:  # a name that leaves the folder: not ours
            raise CorruptFileError(f"{manifest}: {error}; the manifest is damaged") from None
        if not path.is_file():
            raise CorruptFileError(f"{path}: missing from the {what} ({manifest} lists it)")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if sha256_of(path) != expected:
            if any(path.match(pattern) for pattern in warn_only):
                logger.warning(
                    "%s: changed since it was saved (SHA-256 differs from %s); loaded as it is now",
                    path,
                    manifest,
                )
                continue
            raise CorruptFileError(
                f"{path}: its contents changed since it was saved (SHA-256 differs from "
                f"{manifest}); copy or download the {what} again"
            )
    return True


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


def acquire_lock(
    path: str | Path, *, what: str = "run", holds: str | Path | None = None
) -> RunLock:
    """Hold `path` (created if needed) for this process, or raise RunFolderError naming the
    holder and what the lock guards (`holds`: the folder holding the lock file, unless a
    single output is named). A lock file whose holder died is stale: it is taken over with a
    warning."""
    path = Path(path)
    guarded = path.parent if holds is None else holds
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        handle = open(path, "a+")  # noqa: SIM115 (kept open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = _holder(path)
            raise RunFolderError(
                f"{guarded}: in use by another {what} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}; lock file "
                f"{path}); wait for it to finish, or choose another "
                f"{'folder' if holds is None else 'output'}"
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
