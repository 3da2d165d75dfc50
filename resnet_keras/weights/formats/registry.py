"""The file formats resnet_keras reads: one table, the rules that derive from it, and what a value must be.

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
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

from ...errors import WeightsFormatError, WeightsMismatchError


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


# --------------------------------------------------------------------------
# What a weight value must be, whatever file it comes from: one rule for every reader.
#
# HDF5 datasets (`hdf5`), `.pth` tensors and `.safetensors` arrays (`torch_files`,
# mapped by `state_dict`) all pass through here, value by value, before the
# first assignment:
#
# - the value is dense (not sparse, quantized, nested or without data) and
#   its dtype is float16, bfloat16, float32 or float64; integer, bool,
#   complex, string and other data is refused (checked on the dtype alone, so
#   refused data is never read);
# - it is converted to float32, then to the dtype of the variable it goes to,
#   and must be finite after each conversion: NaN, Inf, and values beyond
#   the target's range (a float64 1e39 becomes Inf in float32) are refused.
#
# The readers report every problem of a file at once (`refuse`): a value that
# breaks this rule makes a WeightsFormatError, naming the file and the key or
# dataset; a file whose values are fine but do not fit the model (shapes,
# counts, keys) a WeightsMismatchError. Either way nothing was assigned.
#
# Pretrained stem weights for inputs that are not RGB (`adapt_input_channels`)
# follow timm's rule (`adapt_input_conv`), restated: a stem kernel trained on
# 3 channels becomes one for N channels by
# - N = 1: the sum over the 3 input channels (a gray image that is R = G = B
#   then gives exactly the RGB model's output);
# - N != 3: the RGB kernel repeated cyclically (R, G, B, R, G, ...) to N
#   channels and scaled by 3 / N, so that activations keep their scale.
# Kernels are in Keras' layout (height, width, in, out) whatever the data
# format, so channels_first needs nothing else. Computed in float32.

MAX_REPORTED = 20  # problems listed in one message

LOADABLE_DTYPES = ("float16", "bfloat16", "float32", "float64")
# safetensors' dtype names (its format spec) as NumPy's, so that every reader
# names a dtype alike; names not listed here are kept as they are.
SAFETENSORS_DTYPES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64",
}


class UnusableValue(ValueError):
    """Why one value breaks the rule; the reader adds the file and the key."""


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', 'int64', ... for a NumPy, torch, Keras or safetensors dtype."""
    if isinstance(dtype, str):
        return SAFETENSORS_DTYPES.get(dtype, dtype)
    if isinstance(dtype, np.dtype):
        return dtype.name  # '>f4' is 'float32' too; ml_dtypes' bfloat16 is 'bfloat16'
    return str(dtype).removeprefix("torch.")


def check_dtype(dtype: Any) -> None:
    """Raise UnusableValue unless `dtype` is one of LOADABLE_DTYPES (nothing is read)."""
    name = dtype_name(dtype)
    if name not in LOADABLE_DTYPES:
        raise UnusableValue(
            f"dtype {name} is not floating point (float16, bfloat16, float32 or float64 load)"
        )


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.is_nested:
        raise UnusableValue("is a nested tensor; save each tensor dense")
    if tensor.layout is not torch.strided:
        layout = str(tensor.layout).removeprefix("torch.")
        raise UnusableValue(f"is a {layout} tensor; save it dense (tensor.to_dense())")
    if tensor.is_quantized:
        raise UnusableValue(
            f"is a quantized tensor ({dtype_name(tensor.dtype)}); save it dequantized "
            "(tensor.dequantize())"
        )
    if tensor.device.type != "cpu":
        raise UnusableValue(f"is a tensor on device {tensor.device.type!r} that holds no data here")
    check_dtype(tensor.dtype)
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; widening is exact
        tensor = tensor.float()
    return tensor.numpy()


def _as_numpy(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")  # a torch tensor can only exist once torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        return _torch_to_numpy(value)
    check_dtype(value.dtype)
    return np.asarray(value)


def _converted(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # an overflow is refused below, not warned about
        out = array.astype(dtype, copy=False)
    if not np.all(np.isfinite(out)):
        if not np.all(np.isfinite(array)):
            raise UnusableValue("contains NaN or Inf")
        largest = float(np.max(np.abs(array.astype(np.float64))))
        raise UnusableValue(
            f"holds values beyond the range of {name} (largest magnitude {largest:.4g})"
        )
    return out


def as_float32(value: Any) -> np.ndarray:
    """The value (NumPy array or torch tensor) as a finite float32 array, or UnusableValue."""
    return _converted(_as_numpy(value), np.dtype(np.float32), "float32")


def as_variable_dtype(array: np.ndarray, dtype: Any) -> np.ndarray:
    """A float32 array cast to a variable's dtype (float16 under a float16 policy), still finite."""
    name = dtype_name(dtype)
    if name == "float32":
        return array
    if name == "bfloat16":
        import ml_dtypes  # installed with keras

        target = np.dtype(ml_dtypes.bfloat16)
    else:
        target = np.dtype(name)
    return _converted(array, target, f"the model's {name}")


def refuse(where, model_name: str, unusable: list[str], mismatched: list[str]) -> None:
    """Raise for all the problems found in a file, if any; nothing was assigned."""
    problems = unusable + mismatched
    if not problems:
        return
    listed = "; ".join(problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    summary = f"({len(problems)} problems, model unchanged): {listed}" + (
        f"; and {more} more" if more > 0 else ""
    )
    if unusable:
        raise WeightsFormatError(
            f"{where} holds values that cannot be loaded into model {model_name!r} {summary}. "
            "Weights must be dense float16, bfloat16, float32 or float64 arrays of finite "
            "values; fix or re-export the file."
        )
    raise WeightsMismatchError(f"{where} does not fit model {model_name!r} {summary}")


# --------------------------------------------------------------------------
# Stem kernels for inputs that are not RGB (timm's rule, above)

RGB = 3
INPUT_AXIS = 2  # Keras Conv2D kernels: (height, width, in, out)


def can_adapt(file_shape, model_shape) -> bool:
    """True where a 3-channel conv kernel differs from the model's only in its input channels."""
    file_shape, model_shape = tuple(file_shape), tuple(model_shape)
    return (
        len(file_shape) == len(model_shape) == 4
        and file_shape[INPUT_AXIS] == RGB
        and model_shape[INPUT_AXIS] != RGB
        and file_shape[:INPUT_AXIS] + file_shape[INPUT_AXIS + 1:]
        == model_shape[:INPUT_AXIS] + model_shape[INPUT_AXIS + 1:]
    )


def adapt_stem_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A (h, w, 3, out) kernel adapted to (h, w, channels, out) by timm's rule."""
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 4 or kernel.shape[INPUT_AXIS] != RGB or channels < 1:
        raise ValueError(f"expected a (h, w, 3, out) kernel and channels >= 1, got {kernel.shape}, {channels}")
    if channels == 1:
        return kernel.sum(axis=INPUT_AXIS, keepdims=True)
    order = [i % RGB for i in range(channels)]  # R, G, B, R, G, ...
    return kernel[:, :, order, :] * np.float32(RGB / channels)


ADAPT_HINT = (
    " The file's stem takes 3 (RGB) channels: pass adapt_input_channels=True "
    "to adapt it to the model's input channels."
)
