"""The file formats resnet_keras reads: one table, and the rules that derive from it.

Each `FileFormat` names its suffixes, how its first bytes are recognized,
the module that reads it and the pip extra that reader needs. A file's
reader is chosen by its first bytes, never by its name (`sniff`); names
matter only to refuse formats that can run code when loaded (`REFUSED`,
before a byte is read) and to tell a missing path from an unknown tag.
Messages list the formats from the table.

Every reader gets a file object over bytes read once (and, for a manifest
file, hashed: the shared-cache rule, download/snapshot.py), never the path
or a descriptor of the file on disk. This module imports no reader: the
one a file needs is imported when it is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

from ...errors import WeightsFormatError

HEAD_BYTES = 512
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_LOCAL_HEADER = b"PK\x03\x04"


def _safetensors_head(head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object."""
    return len(head) > 8 and head[8:9] == b"{"


@dataclasses.dataclass(frozen=True)
class FileFormat:
    name: str
    noun: str  # one file of it, for messages
    files: str  # what a user has, for messages
    suffixes: tuple[str, ...]
    how: str  # where such files come from or how they are read
    magic: Callable[[bytes], bool]  # does the file's head say it is one?
    reader: str  # "module.function" of this package that loads a file object into a model
    extra: str | None = None  # the pip extra the reader needs
    torch_layout: bool = False  # fits only models in torchvision's layout


FORMATS = {
    fmt.name: fmt
    for fmt in (
        FileFormat(
            "hdf5", "an HDF5 file", "HDF5 weights files", (".h5", ".hdf5"),
            "Keras 2 layout, as `save_weights` writes it and the official keras.applications files are",
            lambda head: head.startswith(HDF5_SIGNATURE), "hdf5.load",
        ),
        # torch >= 1.6 saves a zip; an older .pt/.pth is a plain pickle and is refused by its bytes.
        FileFormat(
            "pth", "a zip archive (torch's checkpoint format)", "torch state_dicts", (".pth", ".pt"),
            "read with torch.load(weights_only=True)",
            lambda head: head.startswith(ZIP_LOCAL_HEADER), "state_dict.load_pth", extra="torch",
            torch_layout=True,
        ),
        FileFormat(
            "safetensors", "a safetensors file", "safetensors files", (".safetensors",),
            "as timm publishes them, read without any package",
            _safetensors_head, "state_dict.load_safetensors", torch_layout=True,
        ),
    )
}
# Formats refused by name before a byte is read: pickle-based ones can run
# code when loaded, and a whole saved model can carry code (Lambda).
REFUSED = {
    ".pkl": "a pickle",
    ".pickle": "a pickle",
    ".joblib": "a pickle",
    ".bin": "a PyTorch pickle",
    ".ckpt": "a checkpoint",
    ".npz": "a NumPy archive",
    ".npy": "a NumPy array file",
    ".keras": "a whole saved Keras model (it may carry code, e.g. a Lambda layer)",
    ".pb": "a TensorFlow graph",
    ".onnx": "an ONNX model",
}
# A string ending in one of these means a file even where none exists.
PATH_SUFFIXES = tuple(s for fmt in FORMATS.values() for s in fmt.suffixes) + tuple(REFUSED)


def readable() -> str:
    """The readable formats, for messages: 'HDF5 weights files (.h5, .hdf5: ...), ... and ...'."""
    *first, last = (f"{f.files} ({', '.join(f.suffixes)}: {f.how})" for f in FORMATS.values())
    return f"{', '.join(first)} and {last}"


def format_error(where, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{where} is not a usable weights file: {problem}. resnet_keras reads {readable()}."
    )


def missing_file_error(path: Path, hint: str = "") -> FileNotFoundError:
    # One argument only: with errno/filename set, str() would drop the hint.
    return FileNotFoundError(
        f"Weights file not found: {path}.{hint} Check the path, or pass a "
        "weights tag such as 'imagenet'."
    )


def sniff(head: bytes) -> FileFormat | None:
    """The format whose first bytes `head` are, or None."""
    return next((fmt for fmt in FORMATS.values() if fmt.magic(head)), None)


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML or XML page (with or without a UTF-8 BOM)."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().lower().startswith(_HTML_STARTS)


def describe(head: bytes) -> str:
    """Why the first bytes of a file are those of no readable format."""
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        return (
            "it is a zip archive (a .keras model or an .npz?); only torch's "
            "zip checkpoints are read, so no code or pickle from it runs"
        )
    if head.startswith(b"\x80") or head.startswith(b"\x93NUMPY"):
        return (
            "it is a pickle or NumPy file; those are never loaded (pickle can run code). "
            "A .pt or .pth saved by torch < 1.6 is one: save it again with a current torch"
        )
    if looks_like_html(head):
        return "it is an HTML page (a download error or login page?)"
    if HDF5_SIGNATURE[1:4] in head[:8]:
        return "its HDF5 signature is damaged"
    *first, last = (fmt.noun for fmt in FORMATS.values())
    return f"it is not {', '.join(first)} or {last} (maybe truncated or another format)"


def check_local_file(path: Path, received: Any, *, argument: str = "weights") -> Path:
    """Refuse by name what can run code, then anything not a regular file of a readable format.

    `argument`: the name the caller's user gave the file under (for messages).
    """
    refused = REFUSED.get(path.suffix.lower())
    if refused and not path.is_dir():
        raise WeightsFormatError(
            f"{path} is {refused}; resnet_keras loads only {readable()}, and never "
            f"unpickles or runs code from a file. Received: {argument}={os.fspath(received)!r}. "
            "Convert the weights to such a .h5 file with code you trust."
        )
    if not path.exists():
        raise missing_file_error(path)
    if not path.is_file():
        raise format_error(path, "it is a directory" if path.is_dir() else "it is not a regular file")
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if sniff(head) is None:
        raise format_error(path, describe(head))
    return path


def load(
    model,
    file: BinaryIO,
    where,
    *,
    spec,
    torch_models: Sequence[str] = (),
    adapt_input_channels: bool = False,
) -> None:
    """Load the open `file` into `model`, all or nothing, with the reader its first bytes choose.

    `spec`: what the caller knows of the model (`name`, its registry key, and
    `torch_layout`); `torch_models`: the models in torchvision's layout, named
    when a torch checkpoint meets a model of another layout.
    """
    file.seek(0)
    head = file.read(HEAD_BYTES)
    fmt = sniff(head)
    if fmt is None:
        raise format_error(where, describe(head))
    module, function = fmt.reader.rsplit(".", 1)
    reader = getattr(importlib.import_module(f".{module}", __package__), function)
    # Formats in torchvision's layout check the model's layout (after their own
    # first checks: a .keras zip is refused as such, not as "the wrong layout").
    fits = dict(spec=spec, torch_models=torch_models) if fmt.torch_layout else {}
    file.seek(0)
    reader(model, file, where, adapt_input_channels=adapt_input_channels, **fits)
