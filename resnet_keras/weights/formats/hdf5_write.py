"""The writer beside the reader: a model's weights as the Keras 2 layout HDF5 file `hdf5` reads.

The layout Keras 2's `save_weights` wrote (and the official keras files
have): root attribute `layer_names`, one group per weighted layer with a
`weight_names` attribute, the trainable weights first, then the
non-trainable ones (BatchNorm statistics), as keras' legacy writer orders
them. What `convert_checkpoint` writes, so that a torch checkpoint loads
later without torch: `ResNet18(weights="resnet18.h5")`, or a manifest
entry with the SHA-256 it returns.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .hdf5 import weighted_layers
from .registry import FORMATS
from ...errors import InvalidArgumentError
from ...files import file_sha256, replaced


@dataclasses.dataclass(frozen=True)
class ConvertedWeights:
    """What `convert_checkpoint` wrote: put `sha256` and `size` in a manifest entry."""

    path: Path
    sha256: str
    size: int
    model: str
    include_top: bool


def check_destination(dst: str | os.PathLike, overwrite: bool) -> Path:
    """`dst` as the path of a new HDF5 weights file, checked before anything is read or built."""
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"`overwrite` must be True or False. Received: overwrite={overwrite!r}")
    dst = Path(dst).expanduser()
    suffixes = FORMATS["hdf5"].suffixes
    if dst.suffix.lower() not in suffixes:
        raise InvalidArgumentError(
            f"`dst` must end in {' or '.join(suffixes)} (an HDF5 weights file). "
            f"Received: dst={os.fspath(dst)!r}"
        )
    if dst.exists() and not overwrite:
        raise InvalidArgumentError(
            f"`dst` exists already. Received: dst={os.fspath(dst)!r}. Pass overwrite=True "
            "to replace it, or another path."
        )
    if not dst.parent.is_dir():
        raise InvalidArgumentError(
            f"The folder of `dst` must exist. Received: dst={os.fspath(dst)!r}"
        )
    return dst


def write_weights_file(model, dst: Path, *, key: str, include_top: bool) -> ConvertedWeights:
    """Write `model`'s weights to `dst` atomically (a temp file, then renamed); its hash and size.

    The hash is of the bytes that were written, taken before the rename.
    """
    with replaced(dst) as temp:
        write_keras2_layout(model, temp)
        digest, size = file_sha256(temp), temp.stat().st_size
    return ConvertedWeights(dst, digest, size, key, include_top)


def write_keras2_layout(model, path: Path) -> None:
    """The weighted layers of `model` in the legacy layout `hdf5.load` reads."""
    import h5py
    import keras

    layers = weighted_layers(model)
    with h5py.File(path, "w") as root:
        root.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
        root.attrs["backend"] = keras.backend.backend().encode()
        root.attrs["keras_version"] = keras.__version__.encode()
        for layer in layers:
            group = root.create_group(layer.name)
            variables = list(layer.trainable_weights) + list(layer.non_trainable_weights)
            names = [f"{layer.name}/{variable.name}:0" for variable in variables]
            group.attrs["weight_names"] = np.array([name.encode() for name in names])
            for name, variable in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(variable))
