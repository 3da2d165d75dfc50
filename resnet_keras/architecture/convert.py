"""`convert_checkpoint`: a torch checkpoint (torchvision `.pth`/`.pt`, timm `.safetensors`) to HDF5 once.

It lives here, not in `weights/`, because it builds a model of the
registry; the file it writes is `weights.formats.hdf5_write`'s, the
Keras 2 layout that loads without torch or safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path

from .specs import model_key as registry_key
from .specs import SPECS
from ..errors import InvalidArgumentError
from ..weights.formats.hdf5_write import ConvertedWeights, check_destination, write_weights_file
from ..weights.formats.registry import check_local_file

__all__ = ["ConvertedWeights", "convert_checkpoint"]


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
        src: A torchvision/timm state dict: `.pth` or `.pt` (read with
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
    key, dst = check_conversion(src, dst, model_name, include_top=include_top, overwrite=overwrite)
    from .registry import get_model

    model = get_model(key, weights=os.fspath(src), include_top=include_top)
    return write_weights_file(model, dst, key=key, include_top=include_top)


def check_conversion(src, dst, model_name, *, include_top, overwrite) -> tuple[str, Path]:
    """Every argument of `convert_checkpoint`, before torch, Keras or a model: (registry key, dst)."""
    key = registry_key(model_name)
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
    source = Path(src).expanduser()
    if not os.path.lexists(source):
        raise FileNotFoundError(f"No such checkpoint: {source}. `src` must be a torch checkpoint file (.pth, .pt "
                                f"or .safetensors). Received: src={os.fspath(src)!r}")
    check_local_file(source, os.fspath(src), argument="src")  # refused or unreadable formats, before any parser
    return key, check_destination(dst, overwrite)
