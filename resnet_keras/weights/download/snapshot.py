"""The shared-cache rule: a weights file is read once into our own memory,
within a byte limit; those bytes are hashed, and every parser reads exactly
those bytes.

Why: the cache is keras' own folder, and keras' `get_file` rewrites a file
there in place (same inode, truncated first) and deletes it when a download
fails. Hashing a file and then parsing it from disk, even through the same
descriptor, lets such a rewrite slip unverified bytes, or a mix of old and
new, between the hash and the parse. Bytes in our memory cannot change, so
h5py (`h5py.File` on a file object), `torch.load(weights_only=True)` and
safetensors get `as_file(data)`, never the path or a descriptor. Local files
given by path (`weights="x.h5"`) are read the same way.

The other half is a file that another program is writing at the moment we
look (keras rewriting it): `wait_while_written` re-checks it while it keeps
changing, for a bounded time, so a verified file is not judged corrupt, or
set aside, only because we looked in the middle of a rewrite.
"""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path
from typing import BinaryIO, Callable

from ..formats.registry import format_error, missing_file_error
from ..manifest.records import MAX_UNDECLARED_BYTES

# The most bytes a local weights file (weights="x.h5") may hold: the bound of
# a download without a declared size (the largest ResNet file is under 1 GB).
MAX_LOCAL_BYTES = MAX_UNDECLARED_BYTES
# A file that failed its check and has not changed for this long has no
# writer at work: it is judged as it is. keras writes as the bytes arrive, so
# a download in progress changes the file many times a second.
SETTLE_SECONDS = 1.0
POLL_SECONDS = 0.02


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading, refusing anything but a regular file.

    O_NONBLOCK: opening a FIFO must not wait for a writer; the check on the
    open descriptor (not the path) is what the read relies on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise missing_file_error(path) from None
    except IsADirectoryError:
        raise format_error(path, "it is a directory") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise format_error(path, "it is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_once(path: Path, limit: int, *, what: str = "a weights file") -> bytes:
    """All bytes of the regular file `path`, read once; WeightsFormatError above `limit` bytes.

    A file that changes while it is read (its size or times move) is refused
    too: what it held at no single moment is not a file.
    """
    with open_regular(path) as file:
        before = os.fstat(file.fileno())
        if before.st_size > limit:
            raise format_error(
                path,
                f"it holds {before.st_size:,} bytes, more than the {limit:,} that "
                f"{what} may have (no ResNet's weights come near it); nothing was read",
            )
        data = file.read(before.st_size)
        grew = file.read(1)
        if grew or _signature(os.fstat(file.fileno())) != _signature(before):
            raise format_error(
                path, "it changed while it was read (another program writing it?); try again"
            )
    return data


# A file object over bytes read once (shared, not copied), for the parsers.
as_file: Callable[[bytes], BinaryIO] = io.BytesIO


def _signature(info: os.stat_result) -> tuple:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def signature(path: Path) -> tuple | None:
    """What changes when a file is written or replaced; None if nothing is there."""
    try:
        return _signature(os.stat(path))
    except OSError:
        return None


def _age(path: Path) -> float:
    """Seconds since `path` was last written (0 if unknown or in the future)."""
    try:
        info = os.stat(path)
    except OSError:
        return 0.0
    return max(0.0, time.time() - max(info.st_mtime_ns, info.st_ctime_ns) / 1e9)


def wait_while_written(
    path: Path, check: Callable[[Path], bytes | None], *, wait: float, quiet: float | None = None
) -> tuple[bytes | None, bool]:
    """Re-check a file that failed `check` while another program may be writing it.

    Looks every POLL_SECONDS; after a change, `check` runs once the file
    holds still for one look (a writer in full flow is not re-read). Returns
    (bytes, False) as soon as `check` accepts the file; (None, False) once it
    has not changed for `quiet` seconds (SETTLE_SECONDS, at most half of
    `wait`), since when it is what it is (corrupt, or gone); (None, True) if
    it still changes after `wait` seconds (a writer is at work).
    """
    quiet = min(SETTLE_SECONDS, wait / 2) if quiet is None else quiet
    seen, checked = signature(path), True  # the caller has just checked it
    last_change = time.monotonic() - _age(path)  # a file written long ago is settled at once
    deadline = time.monotonic() + wait
    while True:
        now = time.monotonic()
        if now - last_change >= quiet:
            return None, False
        if now >= deadline:
            return None, True
        time.sleep(min(POLL_SECONDS, deadline - now, quiet - (now - last_change)))
        current = signature(path)
        if current != seen:
            seen, last_change, checked = current, time.monotonic(), False
        elif not checked:
            checked = True
            data = check(path)
            if data is not None:
                return data, False
