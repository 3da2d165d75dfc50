"""The model registry: get_model / model_info (Keras); names live in `catalog`.

Keys are the lower-case default model names (`resnet50v2`, `resnet20`,
`plain56`). Each is registered once, by `@catalog.register_model` at its
builder's `def`; this module reads `catalog.ENTRIES`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Callable

import keras

from .catalog import ENTRIES, resolve as _resolve
from .specs import ResNetSpec
from ..data_format import spatial_dims
from .._text import did_you_mean
from ..errors import InvalidArgumentError

def _weight_tags(key: str) -> tuple[str, ...]:
    from .resolve import active_manifest  # shipped + RESNET_KERAS_MANIFEST

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
    builder = ENTRIES[_resolve(name)].function
    parameters = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        suggestion = did_you_mean(unknown[0], parameters)
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
            spatial = spatial_dims(out_shape, layer.data_format)
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
    model = ENTRIES[key].function(weights=None)  # default input size and head
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
    entry = ENTRIES[key]
    spec = entry.spec
    params, trainable, macs = _graph_counts(key)
    return ModelInfo(
        name=key,
        builder=entry.function,
        spec=spec,
        params=params,
        trainable_params=trainable,
        macs=macs,
        default_size=spec.default_size,
        classes=spec.classes,
        preprocessing=spec.preprocessing,
        weights=_weight_tags(key),
    )
