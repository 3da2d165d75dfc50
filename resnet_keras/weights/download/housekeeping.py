"""The cache's own files: temp downloads, locks, full-hash records, and what crashed runs left.

For a file `NAME` of the manifest (the suffixes are `manifest.parse`'s, so
that no manifest can name one of these files):
    .NAME.<host>-<pid>-<rand>.part   a download in progress (removed when it
                                     ends, or by a later run once its
                                     process is gone)
    .NAME.lock                       held while one process fetches NAME
    NAME.corrupt                     a cached NAME that failed its hash
    NAME.sha256                      the full SHA-256 of NAME, when the
                                     manifest declares only a prefix
    NAME.sha256.corrupt              a malformed record, set aside

The cache writes with its own temp files, not `files.replaced`: their
names carry the host and process id, which is how a later run tells the
leftovers of a crashed process from a download in progress.

Full-hash records: torchvision publishes the first 8 hex digits of a file's
SHA-256 (32 bits: a matching file can be made on purpose). So the first
time such a file is verified, its full SHA-256 is written beside it, one
line in `sha256sum` format (`<64 hex>  NAME`; `sha256sum -c NAME.sha256`
checks it), and from then on the cache holds the file to that full hash.
A record is trusted only if it is exactly that line for exactly that name;
anything else is `MALFORMED`, and the cache treats file and record as a
corrupt entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
import warnings
from pathlib import Path
from typing import BinaryIO

from ..manifest.parse import CORRUPT_SUFFIX, LOCK_SUFFIX, RECORD_SUFFIX, TEMP_SUFFIX
from ...errors import CacheError

# How long to wait for another process fetching the same file; after that we
# fetch anyway (the atomic rename keeps the cache correct without the lock).
LOCK_TIMEOUT_SECONDS = 900.0
USE_FILE_LOCK = True
# A temp file whose process is gone (same host), or this old, is from a
# crashed run and is removed by the next fetch of the same file.
STALE_TEMP_SECONDS = 24 * 3600.0
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# A record is one line: 64 hex digits, two spaces, a name of at most 200
# UTF-8 bytes (manifest.parse.MAX_FILE_NAME), a newline.
MAX_RECORD_BYTES = 1024
MALFORMED = "malformed"
_RECORD_LINE = re.compile(rb"([0-9a-f]{64})  ([^\n]+)\n")


def not_a_file(path: Path) -> str | None:
    """What sits at `path` if it is neither missing nor a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return "a dangling symbolic link"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def temp_path(folder: Path, file_name: str) -> Path:
    token = f"{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
    return folder / f".{file_name}.{token}{TEMP_SUFFIX}"


def open_temp(folder: Path, file_name: str) -> tuple[Path, BinaryIO]:
    """Create a new temp file for reading and writing; mode 0o666 & ~umask."""
    path = temp_path(folder, file_name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    return path, os.fdopen(fd, "w+b")


def not_writable(folder: Path, error: OSError, why: str = "") -> CacheError:
    return CacheError(
        f"The weights cache {folder} cannot be written ({error.strerror or error}).{why} "
        "Make it writable, or set RESNET_KERAS_HOME to a writable folder "
        "(resnet_keras never falls back to another folder by itself)."
    )


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(
            f"Cannot create the weights cache {folder} ({error.strerror or error}). "
            "Create it, or set RESNET_KERAS_HOME (or KERAS_HOME) to a writable "
            "folder; resnet_keras never falls back to another folder by itself."
        ) from error
    if not folder.is_dir():
        raise CacheError(
            f"The weights cache {folder} is not a folder. Set RESNET_KERAS_HOME "
            "to a folder."
        )


def set_aside(path: Path) -> bool:
    """Move `path` to `NAME.corrupt`; True if moved (False: a read-only cache, or gone)."""
    try:
        os.replace(path, path.with_name(path.name + CORRUPT_SUFFIX))
    except OSError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def stale_temp_files(folder: Path, file_name: str | None = None) -> list[Path]:
    """Temp files left by crashed runs (of `file_name`, or of any file)."""
    stale = []
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        stem, _, token = name[: -len(TEMP_SUFFIX)].rpartition(".")
        if file_name is not None and stem != f".{file_name}":
            continue
        host, _, rest = token.partition("-")
        pid_text = rest.partition("-")[0]
        try:
            age = now - os.lstat(folder / name).st_mtime
        except OSError:
            continue
        dead = host == _HOST_TAG and pid_text.isdigit() and not _pid_alive(int(pid_text))
        if dead or age > STALE_TEMP_SECONDS:
            stale.append(folder / name)
    return stale


def remove_stale_temps(folder: Path, file_name: str) -> None:
    """Remove what crashed fetches of `file_name` (and of its hash record) left."""
    for name in (file_name, file_name + RECORD_SUFFIX):
        for path in stale_temp_files(folder, name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def locked(folder: Path, file_name: str):
    """Hold `.NAME.lock` while fetching NAME, if file locks work here."""
    if not USE_FILE_LOCK:
        yield
        return
    import filelock

    lock_path = folder / f".{file_name}{LOCK_SUFFIX}"
    lock = filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT_SECONDS)
    try:
        lock.acquire()
    except filelock.Timeout:
        warnings.warn(
            f"Waited {LOCK_TIMEOUT_SECONDS:g} s for another process fetching "
            f"{file_name}; fetching it here too.",
            stacklevel=4,
        )
        yield
        return
    except PermissionError as error:
        raise not_writable(folder, error) from error
    except OSError as error:  # e.g. ENOLCK: no locks here; still correct
        if error.errno in (errno.EROFS, errno.EACCES):
            raise not_writable(folder, error) from error
        yield
        return
    try:
        yield
    finally:
        # Unlinked while held so the cache keeps no lock files; filelock
        # (and any waiter on the old inode) retries on a fresh one.
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        lock.release()


# --------------------------------------------------------------------------
# Full-hash records of files whose manifest hash is only a prefix


def record_path(path: Path) -> Path:
    """Where the record of the cached file `path` lives."""
    return path.with_name(path.name + RECORD_SUFFIX)


def read_record(path: Path) -> str | None:
    """The recorded full SHA-256 of `path`, None if there is no record, or MALFORMED."""
    record = record_path(path)
    if not os.path.lexists(record):
        return None
    if not_a_file(record) is not None:
        return MALFORMED
    try:
        with open(record, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return MALFORMED
    match = _RECORD_LINE.fullmatch(data)
    if match is None or match.group(2) != path.name.encode("utf-8"):
        return MALFORMED
    return match.group(1).decode("ascii")


def write_record_if_missing(path: Path, digest: str) -> None:
    """Record `digest` for the verified `path` (temp file, fsync, rename) unless a record exists.

    A malformed record counts as one: it is set aside, never overwritten here.
    OSError if the cache cannot take it.
    """
    if read_record(path) is not None:
        return
    written, temp = open_temp(path.parent, path.name + RECORD_SUFFIX)
    try:
        with temp:
            temp.write(f"{digest}  {path.name}\n".encode("utf-8"))
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(written, record_path(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(written)
        raise
