"""Hostile weight files, made at test time (issue 19): small files that cost a
reader gigabytes, or load wrong values, unless the reader bounds them.

Each is made from an honest file written by the program users have (h5py,
torch.save, zipfile, safetensors), then edited the way an attacker would:
attribute lists rewritten, bytes of a record patched.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import h5py
import numpy as np

from resnet_keras.architecture.specs import ResNetSpec
from resnet_keras.architecture import build
from resnet_keras.weights.formats.torch_names import torchvision_key

# Keras 2 splits an attribute above HDF5's 64 KiB header limit into name0, name1, ...
ATTRIBUTE_LIMIT = 64512
# A tiny net in torchvision's layout (basic blocks, no conv biases, torch's BN epsilon).
TINY_TORCH = ResNetSpec(
    "resnet18", block="basic", depths=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem_width=4,
    conv_bias=False, bn_epsilon=1e-5, preprocessing="torch",
)


def build_tiny_torch(weights=None):
    """The tiny torch-layout net through the real build path (32x32 inputs, no head)."""
    from resnet_keras.architecture import build as _builder

    return _builder.create_model(
        TINY_TORCH, include_top=False, weights=weights, input_tensor=None, input_shape=(32, 32, 3),
        pooling="avg", classes=10, classifier_activation="softmax", name="tiny_torch",
    )


def numpy_state(model) -> dict:
    """`model`'s weights as a torchvision state dict of NumPy arrays (BN counters included)."""
    state = {}
    for layer in model.layers:
        for variable in layer.weights:
            value = variable.numpy()
            if value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)
            elif value.ndim == 2:
                value = value.T
            state[torchvision_key(layer.name, variable.name)] = np.ascontiguousarray(value)
        if layer.name.endswith("_bn"):
            state[torchvision_key(layer.name, "gamma").replace(".weight", ".num_batches_tracked")] = np.array(7)
    return state


def torch_state(model, dtype=None) -> dict:
    """`model`'s weights as a torchvision state dict (torch tensors, BN counters included)."""
    import torch

    state = {key: torch.from_numpy(value) for key, value in numpy_state(model).items()}
    return state if dtype is None else {key: t if key.endswith("num_batches_tracked") else t.to(dtype)
                                        for key, t in state.items()}


def load_in_memory(model, spec, path: Path) -> None:
    """Load `path` into `model` from bytes in memory: the readers take any binary file object."""
    build.load_file(model, spec, io.BytesIO(Path(path).read_bytes()), path)


def snapshot(model):
    """A check that `model`'s weights are what they are now."""
    before = [w.numpy().copy() for w in model.weights]
    return lambda: all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def _write_list(group, name: str, values: list[bytes]) -> None:
    for key in [k for k in group.attrs if k == name or k.startswith(name)]:
        del group.attrs[key]
    data = np.array(values)
    if data.nbytes <= ATTRIBUTE_LIMIT:
        group.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, int(np.ceil(data.nbytes / ATTRIBUTE_LIMIT)) + 1)):
        group.attrs[f"{name}{i}"] = part


def repeat_names(path: Path, layer_times: int, weight_times: int, layer: str = "conv1_conv") -> Path:
    """`layer_names` lists `layer` `layer_times` times (once if 1), its `weight_names` its kernel `weight_times` times."""
    with h5py.File(path, "r+") as root:
        names = [n for n in root.attrs["layer_names"]]
        if layer_times > 1:
            names = [layer.encode()] * layer_times
        _write_list(root, "layer_names", names)
        kernel = root[layer].attrs["weight_names"][0]
        _write_list(root[layer], "weight_names", [kernel] * weight_times)
    return path


def share_one_heap_string(path: Path, entries: int, length: int) -> Path:
    """A variable-length `layer_names` (as Keras 3's full-model files have) whose `entries`
    entries all refer to one stored string of `length` bytes: a small file that
    costs entries x length bytes to read."""
    with h5py.File(path, "w") as root:
        root.attrs["layer_names"] = ["x" * length] + [f"s{i:05d}" for i in range(entries - 1)]
    data = bytearray(path.read_bytes())
    first = struct.pack("<I", length)  # a record: length, heap collection, index
    at = data.find(first)
    while data[at + 16:at + 20] != struct.pack("<I", 6):
        at = data.find(first, at + 1)
    for i in range(1, entries):
        data[at + 16 * i:at + 16 * (i + 1)] = data[at:at + 16]
    path.write_bytes(bytes(data))
    return path


def set_zip_entry_count(path: Path, count: int, *, zip64: bool = True) -> Path:
    """Rewrite the entry count of a zip's end record (and its zip64 end record, if `zip64`)."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, count, count)
    if zip64 and data[end - 20:end - 16] == b"PK\x06\x07":
        (record,) = struct.unpack_from("<Q", data, end - 20 + 8)
        struct.pack_into("<QQ", data, record + 24, count, count)
    path.write_bytes(bytes(data))
    return path


def safetensors_bytes(header: dict, body: bytes) -> bytes:
    """A safetensors file from its header and data, as the format spec lays it out."""
    import json

    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body
