"""Convert a torch checkpoint (torchvision `.pth`, timm `.safetensors`) to HDF5 once.

The result is a Keras 2 layout weights file (as `save_weights` wrote and
as the official keras files are), so later loads need neither torch nor
safetensors: `ResNet18(weights="resnet18.h5")`, or a manifest entry with
the SHA-256 this function returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from ..architecture import catalog
from ..architecture.specs import SPECS
from ..errors import InvalidArgumentError
from ..files import replaced

H5_SUFFIXES = (".h5", ".hdf5")


@dataclasses.dataclass(frozen=True)
class ConvertedWeights:
    """What `convert_checkpoint` wrote: put `sha256` and `size` in a manifest entry."""

    path: Path
    sha256: str
    size: int
    model: str
    include_top: bool


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model_name: str,
    *,
    include_top: bool = True,
    overwrite: bool = False,
) -> ConvertedWeights:
    """Write the weights of a torch checkpoint as an HDF5 file our loader reads.

    Args:
        src: A torchvision/timm state dict: `.pth` (read with
            `torch.load(weights_only=True)`; needs torch) or `.safetensors`.
        dst: The `.h5` file to write (atomically: a temp file, then renamed).
        model_name: A registered model in torchvision's layout: `"resnet18"`,
            `"resnet34"`, `"resnet50_v1_5"`, `"resnet101_v1_5"`,
            `"resnet152_v1_5"`.
        include_top: Keep the classifier (`fc.*` -> `predictions`).
        overwrite: Replace an existing `dst`.

    Returns:
        The path, SHA-256 and size of the written file.

    Example:
        >>> from resnet_keras import convert_checkpoint
        >>> convert_checkpoint("resnet18-f37072fd.pth", "resnet18.h5", "resnet18")  # doctest: +SKIP
    """
    key = catalog.resolve(model_name)
    fits = [name for name, spec in SPECS.items() if spec.torch_layout]
    if key not in fits:
        raise InvalidArgumentError(
            f"`model_name` must be a model in torchvision's layout ({', '.join(fits)}). "
            f"Received: model_name={model_name!r}"
        )
    if not isinstance(include_top, bool) or not isinstance(overwrite, bool):
        raise InvalidArgumentError(
            "`include_top` and `overwrite` must be True or False. Received: "
            f"include_top={include_top!r}, overwrite={overwrite!r}"
        )
    dst = Path(dst).expanduser()
    if dst.suffix.lower() not in H5_SUFFIXES:
        raise InvalidArgumentError(
            f"`dst` must end in .h5 (an HDF5 weights file). Received: dst={os.fspath(dst)!r}"
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
    from ..architecture.registry import get_model

    model = get_model(key, weights=os.fspath(src), include_top=include_top)
    with replaced(dst) as temp:
        write_keras2_layout(model, temp)
    data = dst.read_bytes()
    return ConvertedWeights(dst, hashlib.sha256(data).hexdigest(), len(data), key, include_top)


def write_keras2_layout(model, path: Path) -> None:
    """The weighted layers of `model` in the legacy layout `weights.h5` reads.

    Per layer a group with `weight_names`, the trainable weights first, then
    the non-trainable ones (BatchNorm statistics), as keras' legacy writer
    orders them.
    """
    import h5py
    import keras

    from ..weights.h5 import weighted_layers

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
