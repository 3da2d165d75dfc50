"""Safe, bounded readers of torch checkpoints: `.pth` and `.safetensors`.

Both read a file object over the bytes that were read once and checked (and,
for a manifest entry, hashed: the shared-cache rule, download/snapshot.py),
never the file on disk. The work is bounded before a
parser sees the bytes: the file may not be larger than `limit` (about twice
the model's float32 weights), and

- a `.pth` (or `.pt`) must be torch's zip format (torch >= 1.6 writes it) whose entries
  are stored, not compressed (torch.save never compresses; a deflated entry
  is how a zip bomb works), each of its declared size inside the file, few
  enough and all under one folder with a `data.pkl`. Only then does
  `torch.load(file, weights_only=True, map_location="cpu")` read it: its
  unpickler builds tensors and plain containers only, never other objects,
  so no code from the file runs. torch is an optional extra
  (`pip install "resnet-keras[torch]"`).
- a `.safetensors` file is a length-prefixed JSON header and raw
  little-endian arrays: the header is bounded and parsed first, then each
  tensor is read here (no torch, no other package) from the bytes its
  header names, which must lie inside the file and tile its data exactly.

Each returns {key: array-like} in the file's shape and dtype (torch
tensors, NumPy arrays; bfloat16 widened to float32, exactly; `UnreadTensor`
for other dtypes), for `state_dict` and the shared value rule (`registry`) to check
before anything is assigned.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .registry import FORMATS
from ...errors import first_line
from ...errors import MissingDependencyError, WeightsFormatError


def format_error(where, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{where} is not a usable torch checkpoint: {problem}. Pass a state_dict "
        "saved by torch.save (torch >= 1.6, zip format) or a .safetensors file, "
        "as torchvision and timm publish them."
    )

_ZIP_END = b"PK\x05\x06"
_ZIP_CENTRAL = b"PK\x01\x02"
_CENTRAL_HEADER_BYTES = 46
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"
_ZIP_END_MAX = 22 + 0xFFFF  # the end record plus the longest comment

MAX_HEADER_BYTES = 16 << 20  # a pickle or JSON header of a ResNet is ~100 KB
# Entries a torch zip holds besides one per tensor (version, byteorder, ...).
EXTRA_ENTRIES = 16


def file_size(file: BinaryIO) -> int:
    """The size of any seekable binary file object (a descriptor or bytes in memory)."""
    return file.seek(0, os.SEEK_END)


def check_size(file: BinaryIO, where, limit: int) -> int:
    size = file_size(file)
    if size > limit:
        raise format_error(
            where,
            f"it holds {size:,} bytes, more than the {limit:,} that the model's "
            "weights can take (twice their float32 size, plus headers)",
        )
    return size


# --------------------------------------------------------------------------
# .pth (torch's zip format)


def _directory_record(file: BinaryIO, size: int, where) -> tuple[int, int, int, int]:
    """(entry count, directory offset, directory length, where the end records start).

    Read from the end record, or from the zip64 end record where there is
    one (as zipfile does); where both give a value they must agree.
    """
    tail_length = min(size, _ZIP_END_MAX)
    file.seek(size - tail_length)
    tail = file.read(tail_length)
    at = tail.rfind(_ZIP_END)
    if at < 0 or at + 22 > len(tail):
        raise format_error(where, "it is not a complete zip archive (truncated?)")
    count, length, offset = struct.unpack_from("<HII", tail, at + 10)
    record_start = size - tail_length + at
    locator = at - 20
    if locator < 0 or tail[locator:locator + 4] != _ZIP64_LOCATOR:
        if count == 0xFFFF or 0xFFFFFFFF in (length, offset):
            raise format_error(where, "its zip64 end record is missing")
        return count, offset, length, record_start
    (record_start,) = struct.unpack_from("<Q", tail, locator + 8)
    if record_start > size - 56:
        raise format_error(where, "its zip64 end record points outside the file")
    file.seek(record_start)
    record = file.read(56)
    if record[:4] != _ZIP64_END:
        raise format_error(where, "its zip64 end record is damaged")
    count64, length64, offset64 = struct.unpack_from("<QQQ", record, 32)
    pairs = ((count, count64, 0xFFFF), (length, length64, 0xFFFFFFFF), (offset, offset64, 0xFFFFFFFF))
    for short, long, sentinel in pairs:
        if short != sentinel and short != long:
            raise format_error(where, "its zip end record and zip64 end record disagree")
    return count64, offset64, length64, record_start


def _check_zip_directory(file: BinaryIO, size: int, where, most: int) -> None:
    """Count the zip's entries in its central directory itself, before zipfile parses it.

    The end record's count alone can understate the directory (zipfile reads
    it by length): the entries are walked, one past the record's count at
    most, the directory must end where the end records begin, and the
    count must match.
    """
    count, offset, length, records_at = _directory_record(file, size, where)
    if count > most:
        raise format_error(where, f"its zip holds {count:,} entries; the model has fewer tensors")
    if offset + length != records_at:
        raise format_error(where, "its zip directory does not end where its end record begins")
    walked, position = 0, offset
    while position < records_at and walked <= count:
        file.seek(position)
        header = file.read(_CENTRAL_HEADER_BYTES)
        if len(header) < _CENTRAL_HEADER_BYTES or header[:4] != _ZIP_CENTRAL:
            raise format_error(where, "its zip directory is damaged")
        name, extra, comment = struct.unpack_from("<HHH", header, 28)
        position += _CENTRAL_HEADER_BYTES + name + extra + comment
        walked += 1
    if walked != count:
        held = f"more than {count:,}" if walked > count else f"{walked:,}"
        raise format_error(
            where, f"its zip end record counts {count:,} entries but its directory holds {held}"
        )
    if position != records_at:
        raise format_error(where, "its zip directory is damaged")


def check_torch_zip(file: BinaryIO, where, *, limit: int, max_tensors: int) -> None:
    """Bound a torch zip checkpoint by its directory alone; raise WeightsFormatError."""
    size = check_size(file, where, limit)
    _check_zip_directory(file, size, where, most=max_tensors + EXTRA_ENTRIES)
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise format_error(where, f"its zip directory is damaged ({error})") from error
    names = [info.filename for info in infos]
    folder = names[0].split("/", 1)[0] if names else ""
    if f"{folder}/data.pkl" not in names:
        raise format_error(
            where,
            "it is a zip archive but not a torch checkpoint (no data.pkl: a .keras "
            "model or an .npz?); nothing in it was run",
        )
    problems = []
    if len(set(names)) != len(names):
        problems.append("entries with the same name")
    if any(not name.startswith(f"{folder}/") for name in names):
        problems.append("entries outside its folder")
    if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
        problems.append("compressed entries (torch.save stores them uncompressed)")
    if any(
        info.file_size != info.compress_size or info.header_offset + info.compress_size > size
        for info in infos
    ):
        problems.append("entries larger than the bytes the file holds")
    if sum(info.file_size for info in infos) > limit:
        problems.append(f"more than {limit:,} bytes of entries")
    if infos[names.index(f"{folder}/data.pkl")].file_size > MAX_HEADER_BYTES:
        problems.append(f"a data.pkl larger than {MAX_HEADER_BYTES:,} bytes")
    if problems:
        raise format_error(where, "its zip has " + ", ".join(problems))


def read_pth(file: BinaryIO, where, *, limit: int, max_tensors: int) -> dict[str, Any]:
    """The state dict of a torch zip checkpoint, read with weights_only=True."""
    check_torch_zip(file, where, limit=limit, max_tensors=max_tensors)
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(
            f"Reading {where} (a torch .pth checkpoint) needs torch, which cannot be "
            f"imported ({error}). Install it with: pip install \"resnet-keras[{FORMATS['pth'].extra}]\", "
            "or convert the file once where torch is installed "
            "(resnet_keras.convert_checkpoint) and load the .h5."
        ) from error
    file.seek(0)
    try:
        state = torch.load(file, weights_only=True, map_location="cpu", mmap=False)
    except Exception as error:  # noqa: BLE001 - torch raises many types; all mean "refused"
        # UnpicklingError (weights_only refused an object), RuntimeError (damaged zip, bad storage)
        raise WeightsFormatError(
            f"{where} could not be read as a torch state_dict with "
            f"torch.load(weights_only=True): {first_line(error)}. Only plain "
            "state_dict checkpoints (tensors by name) load; nothing from the file was run."
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise format_error(
            where,
            "it is not a flat state_dict (a dict of tensors by name); save "
            "model.state_dict() itself, not a training checkpoint around it",
        )
    return state


# --------------------------------------------------------------------------
# .safetensors

# The safetensors dtypes that load (values.LOADABLE_DTYPES), as little-endian
# NumPy types; BF16 is read as 16-bit words and widened (NumPy has no bfloat16).
_SAFETENSORS_NUMPY = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8"}
MAX_DIMENSIONS = 8  # weights are at most 4-D
MAX_KEY_CHARACTERS = 1024  # keys and dtype names a message may quote


@dataclass(frozen=True)
class UnreadTensor:
    """A safetensors entry of a dtype that never loads (I64, BOOL, ...): its bytes are not read.

    BatchNorm step counters (int64) are such entries and are ignored; any
    other is refused by the value rule (`registry`) with its dtype and key.
    """

    dtype: str
    shape: tuple


def _bfloat16_as_float32(words: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32: widening is a shift, and exact."""
    return (words.astype(np.uint32) << 16).view(np.float32)


def _no_repeated_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _safetensor(key: str, entry, body: memoryview, where):
    """(array or UnreadTensor, (begin, end)) of one header entry, inside the file's data."""
    if len(key) > MAX_KEY_CHARACTERS:
        raise format_error(where, f"a key is {len(key):,} characters long")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise format_error(where, f"its entry {key!r} is not a tensor (dtype, shape, data_offsets)")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not (
        isinstance(dtype, str) and len(dtype) <= MAX_KEY_CHARACTERS
        and isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(map(_is_count, shape))
        and isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
        and offsets[0] <= offsets[1]
    ):
        raise format_error(where, f"tensor {key!r} has a malformed dtype, shape or data_offsets")
    begin, end = offsets
    if end > len(body):
        raise format_error(
            where, f"tensor {key!r} lies beyond the file's {len(body):,} bytes of data (truncated?)"
        )
    if dtype not in _SAFETENSORS_NUMPY:
        return UnreadTensor(dtype, tuple(shape)), (begin, end)
    numpy_dtype = np.dtype(_SAFETENSORS_NUMPY[dtype])
    count = math.prod(shape)
    if count * numpy_dtype.itemsize != end - begin:
        raise format_error(
            where, f"tensor {key!r} has {end - begin:,} bytes of data for shape {shape} in {dtype}"
        )
    array = np.frombuffer(body, numpy_dtype, count, begin).reshape(shape)
    return (_bfloat16_as_float32(array) if dtype == "BF16" else array), (begin, end)


def read_safetensors(file: BinaryIO, where, *, limit: int, max_tensors: int) -> dict[str, Any]:
    """The arrays of a safetensors file, each read within the bounds its header gives."""
    size = check_size(file, where, limit)
    file.seek(0)
    data = file.read(size)
    if len(data) < 8:
        raise format_error(where, "it is too short for a safetensors header (truncated?)")
    (header_length,) = struct.unpack_from("<Q", data)
    if header_length > min(MAX_HEADER_BYTES, size - 8):
        raise format_error(
            where, f"its safetensors header claims {header_length:,} bytes (the file has {size:,})"
        )
    try:
        header = json.loads(data[8:8 + header_length], object_pairs_hook=_no_repeated_keys)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError; deep nesting
        raise format_error(where, f"its safetensors header is not JSON ({first_line(error)})") from error
    if not isinstance(header, dict) or len(header) > max_tensors + 1:  # + __metadata__
        raise format_error(
            where, f"its safetensors header is not a table of at most {max_tensors:,} tensors"
        )
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_length:]
    tensors, spans = {}, []
    for key, entry in header.items():
        tensors[key], span = _safetensor(key, entry, body, where)
        spans.append(span)
    end = 0
    for begin, stop in sorted(spans):  # the format's rule: the tensors tile the data exactly
        if begin != end:
            raise format_error(where, "its tensors' data overlap or leave gaps")
        end = stop
    if end != len(body):
        raise format_error(where, f"it holds {len(body) - end:,} bytes after its last tensor")
    return tensors
