"""The lengths of a variable-length string attribute, read before HDF5 reads the strings.

HDF5 stores each entry of such an attribute as a reference (length, heap
collection, index) to a string in a global heap, and reading the attribute
materializes every entry: a 0.9 MB file whose 20,000 entries all refer to
one 100 KB string costs 2 GB and 5 s inside HDF5, before any check of ours
sees a name. Keras 3's full-model `.h5` writes its name lists this way, so
they are not refused: their stored references are read here from the
attribute's object header, so that the caller can bound the total length
and refuse repeats before h5py reads a byte of the strings.

Only the layout h5py and Keras write is read (8-byte addresses, base
address 0, object header version 1 or 2, the attribute stored in the
header, not shared); anything else raises `Unbounded`. The entry count and
the datatype class are cross-checked with what HDF5 reports, so a decoy
message cannot stand in for the attribute HDF5 reads.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_ATTRIBUTE = 0x000C
_CONTINUATION = 0x0010
_VLEN_CLASS = 9
_RECORD = struct.Struct("<IQI")  # sequence length, heap collection address, object index
MAX_HEADER_BYTES = 16 << 20  # all chunks of one object header
MAX_CHUNKS = 1024


class Unbounded(ValueError):
    """The attribute is not stored in a layout whose lengths can be read here."""


def _read(file: BinaryIO, at: int, size: int) -> bytes:
    file.seek(at)
    data = file.read(size)
    if len(data) != size:
        raise Unbounded("its object header lies beyond the end of the file")
    return data


def _base_address(file: BinaryIO) -> int:
    version = _read(file, 8, 1)[0]
    at = {0: 24, 1: 28, 2: 12, 3: 12}.get(version)
    if at is None:
        raise Unbounded(f"superblock version {version}")
    return struct.unpack("<Q", _read(file, at, 8))[0]


def _chunk_messages(chunk: bytes, step: int, layout: struct.Struct):
    at = 0
    while at + step <= len(chunk):
        kind, length, flags = layout.unpack_from(chunk, at)
        yield kind, flags, chunk[at + step:at + step + length]
        at += step + length


def _messages(file: BinaryIO, address: int):
    """(type, flags, body) of every message of an object header, version 1 or 2 ("OHDR")."""
    head = _read(file, address, 6)
    if head[:4] == b"OHDR" and head[4] == 2:
        flags = head[5]
        at = address + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        size = int.from_bytes(_read(file, at, width), "little")
        step, layout = (6 if flags & 0x04 else 4), struct.Struct("<BHB")
        chunks = [(at + width, size, b"")]
    elif head[0] == 1:
        size = struct.unpack_from("<I", _read(file, address + 8, 4))[0]
        step, layout = 8, struct.Struct("<HHB")
        chunks = [(address + 16, size, None)]
    else:
        raise Unbounded("an object header of an unknown version")
    total = visited = 0
    while chunks:
        start, size, signature = chunks.pop(0)
        total, visited = total + size, visited + 1
        if total > MAX_HEADER_BYTES or visited > MAX_CHUNKS:
            raise Unbounded("an object header that is too large")
        chunk = _read(file, start, size)
        if signature:  # a version 2 continuation chunk: "OCHK", messages, checksum
            if chunk[:4] != signature:
                raise Unbounded("a damaged object header chunk")
            chunk = chunk[4:-4]
        for kind, flags, body in _chunk_messages(chunk, step, layout):
            if kind == _CONTINUATION:
                offset, length = struct.unpack_from("<QQ", body)
                chunks.append((offset, length, None if signature is None else b"OCHK"))
            yield kind, flags, body


def _padded(size: int, version: int) -> int:
    return (size + 7) & ~7 if version == 1 else size


def _attribute(body: bytes, counts: dict[str, int]):
    """(name, records) of an attribute message if it is one of `counts`, else None."""
    version, flags, name_size, type_size, space_size = struct.unpack_from("<BBHHH", body)
    if version not in (1, 2, 3):
        return None  # not one HDF5 could read as ours either
    at = 8 + (1 if version == 3 else 0)
    name = body[at:at + name_size].removesuffix(b"\0").decode("utf-8", "replace")
    if name not in counts:
        return None
    count = counts[name]
    if version > 1 and flags:
        raise Unbounded("a shared datatype or dataspace")
    at += _padded(name_size, version)
    if body[at] & 0x0F != _VLEN_CLASS:
        raise Unbounded("a datatype that is not variable-length")
    at += _padded(type_size, version)
    space_version, rank = body[at], body[at + 1]
    dims_at = at + (8 if space_version == 1 else 4)
    if rank != 1 or struct.unpack_from("<Q", body, dims_at)[0] != count:
        raise Unbounded("a dataspace other than the one HDF5 reports")
    at += _padded(space_size, version)
    if len(body) - at < count * _RECORD.size:
        raise Unbounded("data shorter than its entries")
    return name, [_RECORD.unpack_from(body, at + i * _RECORD.size) for i in range(count)]


def string_lengths(file: BinaryIO, obj, counts: dict[str, int]) -> dict[str, list[int]]:
    """Lengths of the strings of each vlen attribute of `obj` named in `counts` (name: entries).

    Raises Unbounded where they cannot be read, and where two entries refer
    to one stored string: reading them would copy it once per entry.
    """
    try:
        return _string_lengths(file, obj, counts)
    except Unbounded:
        raise
    except (struct.error, IndexError, OverflowError, OSError, ValueError) as error:
        # a message or chunk cut short, an offset past what a file can seek to
        raise Unbounded(f"a damaged object header ({type(error).__name__})") from error


def _string_lengths(file: BinaryIO, obj, counts: dict[str, int]) -> dict[str, list[int]]:
    import h5py

    if obj.file.id.get_create_plist().get_sizes() != (8, 8):
        raise Unbounded("addresses that are not 8 bytes")
    if _base_address(file) != 0:
        raise Unbounded("a base address other than 0")
    found: dict[str, list] = {}
    for kind, flags, body in _messages(file, h5py.h5o.get_info(obj.id).addr):
        attribute = _attribute(body, counts) if kind == _ATTRIBUTE and len(body) >= 8 else None
        if attribute is None:
            continue
        name, records = attribute
        if flags & 0x02 or name in found:
            raise Unbounded("a shared or repeated attribute message")
        found[name] = records
    if set(found) != set(counts):
        raise Unbounded("a place outside its object header")
    references = [(heap, index) for records in found.values() for _, heap, index in records]
    if len(set(references)) != len(references):
        raise Unbounded("entries that refer to one stored string")
    return {name: [length for length, _, _ in records] for name, records in found.items()}
