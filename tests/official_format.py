"""Write weight files exactly as the official keras.applications files are.

The official ResNet files were written by Keras 2's `model.save_weights`
to HDF5 (the "legacy" layout): root attributes `layer_names`, `backend` and
`keras_version`; one group per layer (weightless layers included) with a
`weight_names` attribute such as `b"conv1_conv/kernel:0"`, and each array
stored under that path inside the layer's group. Real files cannot be
downloaded here, so tests make files of that exact layout at test time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

KERAS2_VERSION = b"2.2.4"
# Keras 2 split attributes above HDF5's 64 KiB header limit into name0, name1...
ATTRIBUTE_LIMIT = 64512


def _write_attribute(group, name: str, values: list[bytes]) -> None:
    data = np.array(values, dtype="S") if values else np.array([], dtype="S1")
    if data.nbytes <= ATTRIBUTE_LIMIT:
        group.attrs[name] = data
        return
    chunks = int(np.ceil(data.nbytes / ATTRIBUTE_LIMIT)) + 1
    for i, chunk in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{i}"] = chunk


def randomize(model, seed: int = 0) -> None:
    """Give every weight a distinct, well-conditioned random value.

    Fresh BatchNorm layers are the identity up to epsilon; random statistics
    make a parity test sensitive to every BN weight and its order.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for variable in layer.weights:
            shape = tuple(variable.shape)
            kind = variable.name
            if kind in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif kind in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.1, shape)
            else:  # kernels: He-style scale keeps activations bounded
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
            variable.assign(value.astype("float32"))


def write_keras2_weights(model, path: str | Path, *, keras_version=KERAS2_VERSION) -> Path:
    """Save `model`'s weights in the Keras 2 legacy HDF5 layout."""
    path = Path(path)
    with h5py.File(path, "w") as root:
        _write_attribute(root, "layer_names", [l.name.encode() for l in model.layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = keras_version
        for layer in model.layers:
            group = root.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0".encode() for v in layer.weights]
            _write_attribute(group, "weight_names", names)
            for name, variable in zip(names, layer.weights):
                value = np.asarray(variable.numpy(), dtype="float32")
                group.create_dataset(name.decode(), data=value)
    return path


def md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def seeded_resnet20(path: str | Path, *, include_top: bool = False, seed: int = 5) -> Path:
    """A ResNet-20 (32x32) with seeded random weights, written in the official layout."""
    import resnet_keras

    model = resnet_keras.ResNet20(weights=None, include_top=include_top, input_shape=(32, 32, 3))
    randomize(model, seed=seed)
    return write_keras2_weights(model, path)
