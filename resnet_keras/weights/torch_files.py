"""Safe, bounded readers of torch checkpoints: `.pth` and `.safetensors`.

Both read the one open file whose bytes were checked (and, for a manifest
entry, hashed): never a second open by path. The work is bounded before a
parser sees the bytes: the file may not be larger than `limit` (about twice
the model's float32 weights), and

- a `.pth` must be torch's zip format (torch >= 1.6 writes it) whose entries
  are stored, not compressed (torch.save never compresses; a deflated entry
  is how a zip bomb works), each of its declared size inside the file, few
  enough and all under one folder with a `data.pkl`. Only then does
  `torch.load(file, weights_only=True, map_location="cpu")` read it: its
  unpickler builds tensors and plain containers only, never other objects,
  so no code from the file runs. torch is an optional extra
  (`pip install "resnet-keras[torch]"`).
- a `.safetensors` file is a length-prefixed JSON header and raw arrays;
  the header is bounded and parsed first, then the `safetensors` package's
  NumPy reader (no torch) reads the bytes already in memory.

Each returns {key: array-like}; arrays keep their file dtype and shape
(torch tensors or NumPy arrays), for the caller to check before copying.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from typing import Any, BinaryIO

from ..errors import MissingDependencyError, WeightsFormatError
from .h5 import first_line


def format_error(where, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{where} is not a usable torch checkpoint: {problem}. Pass a state_dict "
        "saved by torch.save (torch >= 1.6, zip format) or a .safetensors file, "
        "as torchvision and timm publish them."
    )

ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"
_ZIP_END_MAX = 22 + 0xFFFF  # the end record plus the longest comment

MAX_HEADER_BYTES = 16 << 20  # a pickle or JSON header of a ResNet is ~100 KB
# Entries a torch zip holds besides one per tensor (version, byteorder, ...).
EXTRA_ENTRIES = 16


def file_size(file: BinaryIO) -> int:
    return file.seek(0, os.SEEK_END)  # a file object over the verified bytes (snapshot.as_file)


def check_size(file: BinaryIO, where, limit: int) -> int:
    size = file_size(file)
    if size > limit:
        raise format_error(
            where,
            f"it holds {size:,} bytes, more than the {limit:,} that the model's "
            "weights can take (twice their float32 size, plus headers)",
        )
    return size


def looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object."""
    return len(head) > 8 and head[8:9] == b"{"


# --------------------------------------------------------------------------
# .pth (torch's zip format)


def _zip_entry_count(file: BinaryIO, size: int, where) -> int:
    """The entry count of the zip's end record, read before zipfile parses a directory."""
    tail_length = min(size, _ZIP_END_MAX)
    file.seek(size - tail_length)
    tail = file.read(tail_length)
    at = tail.rfind(_ZIP_END)
    if at < 0 or at + 22 > len(tail):
        raise format_error(where, "it is not a complete zip archive (truncated?)")
    (count,) = struct.unpack_from("<H", tail, at + 10)
    if count != 0xFFFF:
        return count
    locator = at - 20  # ZIP64: the real count is in the zip64 end record
    if locator < 0 or tail[locator:locator + 4] != _ZIP64_LOCATOR:
        raise format_error(where, "its zip64 end record is missing")
    (offset,) = struct.unpack_from("<Q", tail, locator + 8)
    if offset > size - 56:
        raise format_error(where, "its zip64 end record points outside the file")
    file.seek(offset)
    record = file.read(56)
    if record[:4] != _ZIP64_END:
        raise format_error(where, "its zip64 end record is damaged")
    return struct.unpack_from("<Q", record, 32)[0]


def check_torch_zip(file: BinaryIO, where, *, limit: int, max_tensors: int) -> None:
    """Bound a torch zip checkpoint by its directory alone; raise WeightsFormatError."""
    size = check_size(file, where, limit)
    count = _zip_entry_count(file, size, where)
    if count > max_tensors + EXTRA_ENTRIES:
        raise format_error(
            where, f"its zip holds {count:,} entries; the model has at most {max_tensors:,} tensors"
        )
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
            f"imported ({error}). Install it with: pip install \"resnet-keras[torch]\", "
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


def read_safetensors(file: BinaryIO, where, *, limit: int, max_tensors: int) -> dict[str, Any]:
    """The arrays of a safetensors file, read with `safetensors.numpy` (no torch)."""
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
        header = json.loads(data[8:8 + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise format_error(where, f"its safetensors header is not JSON ({error})") from error
    if not isinstance(header, dict) or len(header) > max_tensors + 1:  # + __metadata__
        raise format_error(
            where, f"its safetensors header is not a table of at most {max_tensors:,} tensors"
        )
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load
    except ImportError as error:
        raise MissingDependencyError(
            f"Reading {where} (a .safetensors file) needs the safetensors package "
            f"({error}). Install it with: pip install \"resnet-keras[safetensors]\"."
        ) from error
    try:
        return load(data)
    except (SafetensorError, ValueError, TypeError) as error:
        raise format_error(where, f"safetensors could not read it ({first_line(error)})") from error
