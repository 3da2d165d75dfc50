"""Weights files in the layout of the released keras.applications files.

The official ResNet files were written by Keras 2's `save_weights` to HDF5:
root attributes `layer_names`, `backend` and `keras_version`, one group per
layer with a `weight_names` attribute (`b"conv1_conv/kernel:0"`) and each
array under that name. Both libraries load such a file by layer order, so
the benchmark times both on the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

# HDF5 object headers hold at most 64 KiB of attributes; the benchmarked
# models stay far below it, so the writer refuses rather than splits.
ATTRIBUTE_LIMIT = 64512


def seed_weights(model, seed: int = 0) -> None:
    """Distinct random weights, BatchNorm statistics included.

    Fresh BatchNorm layers are the identity, so equal outputs would prove
    little; scales near 1 and fan-in-scaled kernels keep activations bounded
    through 150 layers.
    """
    rng = np.random.default_rng(seed)
    for variable in (v for layer in model.layers for v in layer.weights):
        shape = tuple(variable.shape)
        if variable.name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif variable.name in ("beta", "moving_mean", "bias"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, np.sqrt(1.0 / np.prod(shape[:-1])), shape)
        variable.assign(value.astype("float32"))


def _names(values: list[str]) -> np.ndarray:
    if not values:
        return np.array([], dtype="S1")
    data = np.array([v.encode() for v in values], dtype="S")
    if data.nbytes > ATTRIBUTE_LIMIT:
        raise ValueError(f"{data.nbytes} bytes of names do not fit one HDF5 attribute")
    return data


def write_official_format(model, path: Path) -> Path:
    """`model`'s weights as a Keras 2.2.4 `save_weights` HDF5 file."""
    with h5py.File(path, "w") as root:
        root.attrs["layer_names"] = _names([layer.name for layer in model.layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = root.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
            group.attrs["weight_names"] = _names(names)
            for name, variable in zip(names, layer.weights):
                group.create_dataset(name, data=np.asarray(variable.numpy(), dtype="float32"))
    return path
