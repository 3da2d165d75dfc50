"""The cache's own files: temp downloads, locks, and what crashed runs left.

For a file `NAME` of the manifest:
    .NAME.<host>-<pid>-<rand>.part   a download in progress (removed when it
                                     ends, or by a later run once its
                                     process is gone)
    .NAME.lock                       held while one process fetches NAME
    NAME.corrupt                     a cached NAME that failed its hash
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
import stat
import time
import warnings
from pathlib import Path
from typing import BinaryIO

from ..errors import CacheError

# How long to wait for another process fetching the same file; after that we
# fetch anyway (the atomic rename keeps the cache correct without the lock).
LOCK_TIMEOUT_SECONDS = 900.0
USE_FILE_LOCK = True
# A temp file whose process is gone (same host), or this old, is from a
# crashed run and is removed by the next fetch of the same file.
STALE_TEMP_SECONDS = 24 * 3600.0
TEMP_SUFFIX = ".part"
CORRUPT_SUFFIX = ".corrupt"
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


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
    for path in stale_temp_files(folder, file_name):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def locked(folder: Path, file_name: str):
    """Hold `.NAME.lock` while fetching NAME, if file locks work here."""
    if not USE_FILE_LOCK:
        yield
        return
    import filelock

    lock_path = folder / f".{file_name}.lock"
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
