"""Full SHA-256 records of cached files whose manifest hash is only a prefix.

torchvision publishes the first 8 hex digits of a file's SHA-256 (32 bits:
a matching file can be made on purpose). So the first time such a file is
verified, its full SHA-256 is written beside it as `NAME.sha256`, one line
in `sha256sum` format (`<64 hex>  NAME`; `sha256sum -c NAME.sha256` checks
it), and from then on the cache holds the file to that full hash: on every
hit, and on any later download of the same name.

A record is trusted only if it is exactly that line for exactly that name;
anything else (another name, other text, too long, not a regular file) is
`MALFORMED`, and the cache treats file and record as a corrupt entry.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from . import housekeeping

SUFFIX = ".sha256"
# A record is one line: 64 hex digits, two spaces, a name of at most 200
# UTF-8 bytes (manifest.MAX_FILE_NAME), a newline.
MAX_BYTES = 1024
MALFORMED = "malformed"
_LINE = re.compile(rb"([0-9a-f]{64})  ([^\n]+)\n")


def path_of(path: Path) -> Path:
    """Where the record of the cached file `path` lives."""
    return path.with_name(path.name + SUFFIX)


def read(path: Path) -> str | None:
    """The recorded full SHA-256 of `path`, None if there is no record, or MALFORMED."""
    record = path_of(path)
    if not os.path.lexists(record):
        return None
    if housekeeping.not_a_file(record) is not None:
        return MALFORMED
    try:
        with open(record, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError:
        return MALFORMED
    match = _LINE.fullmatch(data)
    if match is None or match.group(2) != path.name.encode("utf-8"):
        return MALFORMED
    return match.group(1).decode("ascii")


def write(path: Path, digest: str) -> None:
    """Record `digest` for `path` atomically (temp file, fsync, rename); OSError if it cannot."""
    folder = path.parent
    temp_path, temp = housekeeping.open_temp(folder, path.name + SUFFIX)
    try:
        with temp:
            temp.write(f"{digest}  {path.name}\n".encode("utf-8"))
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_path, path_of(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def write_if_missing(path: Path, digest: str) -> None:
    """Record `digest` for the verified `path` unless a record (even a malformed one) exists."""
    if read(path) is None:
        write(path, digest)


def set_aside(path: Path) -> bool:
    """Move the record of `path` to `NAME.sha256.corrupt`; True if moved."""
    record = path_of(path)
    try:
        os.replace(record, record.with_name(record.name + housekeeping.CORRUPT_SUFFIX))
    except OSError:
        return False
    return True
