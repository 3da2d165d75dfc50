"""The model registry: list_models / get_model / model_info.

Keys are the lower-case default model names (`resnet50v2`, `resnet20`,
`plain56`); each key is one builder and one `ResNetSpec`. The table is
built once from the builders themselves (their default `name`), so a key,
a builder and a spec cannot drift apart, and a duplicate key raises. The
keras-free part (names, `list_models`, the catalog the command line reads)
lives in `_catalog`; the table here is checked against it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
from types import MappingProxyType
from typing import Any, Callable, Mapping

import keras

from .. import cifar, resnet, resnet_small, resnet_v2
from .catalog import ENTRIES, list_models, resolve as _resolve
from .specs import SPECS, ResNetSpec
from ..errors import InvalidArgumentError


def _table(*modules) -> Mapping[str, Callable[..., keras.Model]]:
    table: dict[str, Callable[..., keras.Model]] = {}
    for module in modules:
        for attr in module.__all__:
            builder = getattr(module, attr)
            if not attr[0].isupper():
                continue  # preprocess_input, decode_predictions, ...
            key = inspect.signature(builder).parameters["name"].default
            if key in table:
                raise RuntimeError(
                    f"Model {key!r} is registered twice ({table[key].__name__} "
                    f"and {builder.__name__}); registry keys must be unique."
                )
            if key not in SPECS:
                raise RuntimeError(f"Builder {builder.__name__} has no spec {key!r}.")
            listed = ENTRIES.get(key)
            if listed is None or (listed.builder, f"resnet_keras.{listed.module}") != (
                builder.__name__, builder.__module__
            ):
                raise RuntimeError(
                    f"Builder {builder.__module__}.{builder.__name__} ({key!r}) must be "
                    f"listed as such in _catalog.ENTRIES. Received: {listed}"
                )
            table[key] = builder
    return MappingProxyType(table)


BUILDERS = _table(resnet_small, resnet, resnet_v2, cifar)
if set(BUILDERS) != set(SPECS):
    raise RuntimeError(f"Specs without a builder: {sorted(set(SPECS) - set(BUILDERS))}")


def _weight_tags(key: str) -> tuple[str, ...]:
    from ..weights.resolve import active_manifest  # shipped + RESNET_KERAS_MANIFEST

    return tuple(active_manifest().tags(key))


def get_model(name: str, /, **kwargs) -> keras.Model:
    """Build a registered model by name; `kwargs` go to its builder.

    `name` is positional-only, so `name=` in `kwargs` names the model:
    `get_model("resnet20", name="my_net")`.

    Example:
        >>> from resnet_keras import get_model
        >>> model = get_model("resnet20", input_shape=(32, 32, 3))
        >>> model.output_shape
        (None, 10)
    """
    builder = BUILDERS[_resolve(name)]
    parameters = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        hints = difflib.get_close_matches(unknown[0], list(parameters), n=1)
        suggestion = f" Did you mean {hints[0]!r}?" if hints else ""
        # a TypeError, as Python raises for the builder itself
        raise TypeError(
            f"{builder.__name__} takes the arguments {list(parameters)}."
            f"{suggestion} Received: {unknown[0]}={kwargs[unknown[0]]!r}"
        )
    return builder(**kwargs)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What `model_info` reports about one registered model.

    Attributes:
        name: Registry key (and default model name).
        builder: The public builder, e.g. `resnet_keras.ResNet50`.
        spec: The architecture as data.
        params: All weights of the model with its default head, as
            `count_params()` gives them (BatchNorm moving statistics too).
        trainable_params: Trainable weights only (the count torchvision and
            the paper report).
        macs: Multiply-accumulates of one image at the default input size,
            counted from the Keras graph (every Conv2D and Dense layer).
        default_size: Default input height and width.
        classes: Default number of classes.
        preprocessing: `preprocess_input` mode the weights expect (None:
            no pretrained weights define one).
        weights: Weight tags available in the active manifest.
    """

    name: str
    builder: Callable[..., keras.Model]
    spec: ResNetSpec
    params: int
    trainable_params: int
    macs: int
    default_size: int
    classes: int
    preprocessing: str | None
    weights: tuple[str, ...]


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per sample of the Conv2D and Dense layers.

    A conv layer costs (output pixels) x (kernel height x width x input
    channels / groups) x (filters); a dense layer (inputs x units). Adds of
    biases, BatchNorm, activations, pooling and residual adds are not
    counted (the convention of the ResNet paper and of torchvision).
    The model's input size must be static.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_shape = layer.output.shape
            spatial = out_shape[2:] if layer.data_format == "channels_first" else out_shape[1:3]
            if None in spatial:
                raise InvalidArgumentError(
                    "Counting multiply-adds needs a static input size. "
                    f"Received: {layer.name} output shape {tuple(out_shape)}"
                )
            total += math.prod(spatial) * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            positions = math.prod(layer.output.shape[1:-1])  # 1 for a 2D input
            total += positions * math.prod(layer.kernel.shape)
    return total


@functools.lru_cache(maxsize=None)
def _graph_counts(key: str) -> tuple[int, int, int]:
    model = BUILDERS[key](weights=None)  # default input size and head
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return model.count_params(), trainable, count_macs(model)


def model_info(name: str) -> ModelInfo:
    """Parameters, multiply-adds, input size, preprocessing and weights of a model.

    The counts come from building the model once (symbolically, no weights
    loaded) at its default input size with its default head; the result is
    cached per process. ResNet152 takes about 2 s, ResNet1202 longer.

    Example:
        >>> from resnet_keras import model_info
        >>> info = model_info("resnet20")
        >>> info.trainable_params, round(info.macs / 1e6, 1)
        (269722, 40.6)
    """
    key = _resolve(name)
    spec = SPECS[key]
    params, trainable, macs = _graph_counts(key)
    return ModelInfo(
        name=key,
        builder=BUILDERS[key],
        spec=spec,
        params=params,
        trainable_params=trainable,
        macs=macs,
        default_size=spec.default_size,
        classes=spec.classes,
        preprocessing=spec.preprocessing,
        weights=_weight_tags(key),
    )
