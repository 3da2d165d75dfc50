"""The one rule for showing and storing a file name as text.

Used for every printed line, every error message, the `features` errors
file and the path column of its Parquet shards, so a name reads the same
everywhere.
"""

from __future__ import annotations

import os

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
