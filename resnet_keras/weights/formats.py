"""Which reader a weights file gets: chosen by its first bytes, not its name.

- HDF5 (Keras 2 `save_weights` layout, the official keras files): `h5`.
- torch's zip checkpoint (`torch.save(model.state_dict())`, torchvision's
  `.pth`): `torch_files.read_pth`, then `state_dict`.
- safetensors (timm's `model.safetensors`): `torch_files.read_safetensors`,
  then `state_dict`.

Anything else (a pickle, an HTML page, an empty file) is refused before a
parser sees it. The reader gets a file object over the bytes that were read
once and (for a manifest file) hashed, never the path or a descriptor of
the file on disk (the shared-cache rule, snapshot.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from . import h5, state_dict, torch_files
from ..architecture.specs import ResNetSpec

HEAD_BYTES = 512


def sniff(head: bytes) -> str | None:
    """'hdf5', 'pth', 'safetensors', or None for anything else."""
    if head.startswith(h5.HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(torch_files.ZIP_LOCAL_HEADER):
        return "pth"
    if torch_files.looks_like_safetensors(head):
        return "safetensors"
    return None


def _refuse(head: bytes, where) -> None:
    if sniff(head) is None:
        raise h5.format_error(where, h5.describe_non_hdf5(head))


def check_signature(path: Path) -> None:
    """Raise unless `path` is a regular file in one of the readable formats."""
    h5.check_regular(path)
    with open(path, "rb") as f:
        _refuse(f.read(HEAD_BYTES), path)


def load_from_file(
    model, spec: ResNetSpec, file: BinaryIO, where, *, adapt_input_channels: bool = False
) -> None:
    """Load the open `file` into `model` (built from `spec`), all or nothing."""
    file.seek(0)
    head = file.read(HEAD_BYTES)
    kind = sniff(head)
    if kind == "hdf5":
        h5.load_from_file(model, file, where, adapt_input_channels=adapt_input_channels)
        return
    _refuse(head, where)
    bounds = dict(limit=state_dict.byte_limit(model), max_tensors=state_dict.max_tensors(model))
    if kind == "pth":
        torch_files.check_torch_zip(file, where, **bounds)  # a .keras zip is refused as such first
        state_dict.check_layout(spec, model.name, where)
        state = torch_files.read_pth(file, where, **bounds)
    else:
        state_dict.check_layout(spec, model.name, where)
        state = torch_files.read_safetensors(file, where, **bounds)
    state_dict.load_state_dict(model, state, where, adapt_input_channels=adapt_input_channels)
