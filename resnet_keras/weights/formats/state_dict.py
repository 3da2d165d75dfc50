"""Torch state dicts (torchvision, timm) into Keras models, all or nothing.

`load_pth` and `load_safetensors` are the readers the format registry
names: bounded reading (`torch_files`), then this module's mapping. Keys
map to Keras weights by rule (`torch_names.torchvision_key`). Every
weight of the model is looked up, checked (shape, then the value rule every
reader shares: `registry.as_variable_dtype`) and transposed to Keras' layout before the first
assignment; every key of the file must be used (`num_batches_tracked`
aside, and `fc.*` when the model has no head). A Keras conv bias the
checkpoint lacks (torch convs have none) is zero. Any problem: an error
naming the keys (`registry.refuse`), and the model is unchanged.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np

from . import torch_files, registry
from .hdf5 import weighted_layers
from .torch_names import HEAD_PREFIX, IGNORED_SUFFIX, torchvision_key
from ...errors import WeightsMismatchError

# Bounds on a file for a model with `n` float32 weights: float64 files are
# twice as large, and a head left out of the model (include_top=False) may
# still be in the file.
HEADROOM_BYTES = 64 << 20


def byte_limit(model) -> int:
    """The most bytes a checkpoint for `model` may hold."""
    return 2 * 4 * model.count_params() + HEADROOM_BYTES


def max_tensors(model) -> int:
    """Tensors a checkpoint may hold: the model's, a BN step counter per BN, a head."""
    return 2 * len(model.weights) + 2


def torch_shape(keras_shape: tuple) -> tuple:
    """(h, w, in, out) -> (out, in, h, w); (in, out) -> (out, in); vectors as they are."""
    if len(keras_shape) == 4:
        return (keras_shape[3], keras_shape[2], keras_shape[0], keras_shape[1])
    return keras_shape[::-1]


def keras_shape(torch_shape: tuple) -> tuple:
    """The inverse of `torch_shape`."""
    if len(torch_shape) == 4:
        return (torch_shape[2], torch_shape[3], torch_shape[1], torch_shape[0])
    return torch_shape[::-1]


def to_keras_layout(value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value.T if value.ndim == 2 else value


def check_layout(model, spec, torch_models: Sequence[str], where) -> None:
    """Refuse a torch checkpoint for a model not in torchvision's layout.

    `spec`: anything with the model's registry `name` and `torch_layout`;
    `torch_models`: the registry names of the models that fit, for the message.
    """
    if not spec.torch_layout:
        raise WeightsMismatchError(
            f"{where} is a torch checkpoint, which fits only models in torchvision's "
            f"layout ({', '.join(torch_models)}). Received: model {model.name!r} ({spec.name}). "
            "keras' resnet50/101/152 stride on the first 1x1 conv and have conv biases: for "
            "torchvision's or timm's ResNet-50/101/152 build ResNet50V1_5 (resnet50_v1_5) etc."
        )


def load_pth(model, file: BinaryIO, where, *, spec, torch_models, adapt_input_channels=False) -> None:
    """A torch zip checkpoint into `model`: bounded by its directory, then read with weights_only=True."""
    bounds = dict(limit=byte_limit(model), max_tensors=max_tensors(model))
    torch_files.check_torch_zip(file, where, **bounds)  # a .keras zip is refused as such first
    check_layout(model, spec, torch_models, where)
    state = torch_files.read_pth(file, where, **bounds)
    load_state_dict(model, state, where, adapt_input_channels=adapt_input_channels)


def load_safetensors(model, file: BinaryIO, where, *, spec, torch_models, adapt_input_channels=False) -> None:
    """A safetensors file into `model`, each tensor read within the bounds its header gives."""
    check_layout(model, spec, torch_models, where)
    state = torch_files.read_safetensors(file, where, limit=byte_limit(model), max_tensors=max_tensors(model))
    load_state_dict(model, state, where, adapt_input_channels=adapt_input_channels)


def plan(model, state: Mapping[str, Any], where, *, adapt_input_channels: bool = False):
    """(variable, value) pairs for every weight of `model`; raise listing every problem."""
    layers = weighted_layers(model)
    has_head = any(layer.name == "predictions" for layer in layers)
    pairs, unusable, mismatched, used = [], [], [], set()
    stem = layers[0].name if layers else None
    for layer in layers:
        for variable in layer.weights:
            key = torchvision_key(layer.name, variable.name)
            shape = tuple(variable.shape)
            if key not in state:
                if variable.name == "bias" and not layer.name.endswith("_bn") and layer.name != "predictions":
                    pairs.append((variable, np.zeros(shape, np.float32)))  # torch convs have no bias
                else:
                    mismatched.append(f"{key}: missing (for {layer.name}/{variable.name})")
                continue
            used.add(key)
            value = state[key]
            got = tuple(value.shape)
            wanted = torch_shape(shape)
            adaptable = layer.name == stem and registry.can_adapt(keras_shape(got), shape)
            adapting = adapt_input_channels and adaptable
            if got != wanted and not adapting:
                hint = registry.ADAPT_HINT if adaptable else ""
                mismatched.append(f"{key}: shape {got} in the file, {wanted} in the model ({layer.name}){hint}")
                continue
            try:
                array = to_keras_layout(registry.as_float32(value))
                if adapting:
                    array = registry.adapt_stem_kernel(array, shape[registry.INPUT_AXIS])
                pairs.append((variable, registry.as_variable_dtype(array, variable.dtype)))
            except registry.UnusableValue as problem:
                unusable.append(f"{key}: {problem}")
    unused = [
        key for key in state
        if key not in used
        and not key.endswith(IGNORED_SUFFIX)
        and not (not has_head and key.startswith(HEAD_PREFIX))
    ]
    if unused:
        mismatched.append(
            f"{len(unused)} keys of the file have no place in the model: "
            f"{[key[:100] for key in unused[:registry.MAX_REPORTED]]}"
            " (another architecture or depth? a 'module.' prefix from DataParallel?)"
        )
    registry.refuse(where, model.name, unusable, mismatched)
    return pairs


def load_state_dict(model, state: Mapping[str, Any], where, *, adapt_input_channels: bool = False) -> None:
    """Assign a checked state dict to `model` (nothing is assigned on any problem)."""
    for variable, value in plan(model, state, where, adapt_input_channels=adapt_input_channels):
        variable.assign(value)


__all__ = [
    "byte_limit", "check_layout", "load_pth", "load_safetensors", "load_state_dict", "max_tensors", "plan",
]
