"""What the package shows of things, one rule each.

- `printable`: a file name as text, for every printed line, every error
  message, the `features` errors file and the path column of its Parquet
  shards, so a name reads the same everywhere.
- `first_line`: the first line of an exception, for one-line errors.
- `did_you_mean`: the close matches of a misspelled name, for errors.
"""

from __future__ import annotations

import difflib
import os
from typing import Iterable

# os.fsdecode turns each byte of a name that is not valid UTF-8 into one of
# these lone surrogates ("surrogateescape"): b"\xff" -> "\udcff".
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def printable(text: str | bytes | os.PathLike) -> str:
    """`text` as printable UTF-8: invisible characters and undecodable bytes escaped.

    A file name can hold a newline (which would forge an output line), a
    right-to-left override, or bytes that are not UTF-8 (which no UTF-8
    terminal, CSV or Parquet string can hold). Control and other invisible
    characters are shown as Python escapes (`\\n`, `\\u202e`), undecodable
    bytes as `\\xff`; everything else, backslashes included, as it is. The
    result is printable, so escaping it again changes nothing.

    >>> printable(b"bad\\xff.jpg"), printable("two\\nlines.jpg"), printable("Ünï 写真.jpg")
    ('bad\\\\xff.jpg', 'two\\\\nlines.jpg', 'Ünï 写真.jpg')
    """
    text = os.fsdecode(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    if ord(char) in _ESCAPED_BYTES:
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of `error`'s message (its type name if empty), at most `limit` characters.

    A longer line loses its middle, not its end: the end often names the
    cause (a refused connection after a long URL).
    """
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    if len(line) <= limit:
        return line
    keep = (limit - 5) // 2
    return f"{line[:keep]} ... {line[-keep:]}"


def did_you_mean(name: object, choices: Iterable[str], n: int = 1) -> str:
    """" Did you mean 'x'?" (or "'x', 'y'") for the closest choices, else ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=n)
    if not close:
        return ""
    return f" Did you mean {', '.join(repr(c) for c in close)}?"
