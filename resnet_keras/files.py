"""The file rules of the package: how a file appears, its SHA-256, a page rewritten.

- `replaced(path)`: write to a temp file beside `path`, then rename it over
  `path` in one step, so a reader (or a crash) sees the old file or the new
  one, never half of it. The temp file is created with mode 0o666 and the
  kernel applies the umask, as `open()` would: no `os.umask` flip, which
  would change the mask of every thread of the process for a moment.
- `file_sha256(path)`: the hex SHA-256 of a file, read in bounded chunks.
- `rewrite_text(path, render)`: a generated text file (docs tables, the CLI
  reference) rendered again and replaced only if it changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

CHUNK_BYTES = 1 << 20


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` (`.NAME.<random>.part`)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")


@contextlib.contextmanager
def replaced(path: str | os.PathLike, temp: Path | None = None) -> Iterator[Path]:
    """A new empty temp file beside `path`, renamed over `path` if the block succeeds.

    Whatever writes the temp path (pyarrow, h5py, numpy) must close it; the
    bytes are flushed to disk before the rename, and the temp file is
    removed if the block raises. `temp` names the temp file where the
    caller's cleanup reads its name (the weights cache: host and process);
    by default `temp_name(path)`.
    """
    path = Path(path)
    temp = temp or temp_name(path)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temp
        with open(temp, "rb+") as f:  # on disk before the name says "done"
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, temp: Path | None = None) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` complete or not at all (`temp`: as for `replaced`)."""
    with replaced(path, temp) as temp, open(temp, "wb") as f:
        yield f


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rewrite_text(path: str | os.PathLike, render: Callable[[str], str]) -> bool:
    """Replace the UTF-8 text at `path` by `render(text)` if that differs; whether it did."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if new == text:
        return False
    with atomic_write(path) as f:
        f.write(new.encode("utf-8"))
    return True
