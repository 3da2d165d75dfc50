"""The model registry: get_model / model_info; names live in `catalog`.

Keys are the lower-case default model names (`resnet50v2`, `resnet20`,
`plain56`). Each is registered once, where its builder is defined
(`catalog.define_builder` or `@catalog.register_model`); this module reads
`catalog.ENTRIES`, and `model_info` the recorded counts (no Keras import
for a shipped model).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Callable

from . import counts
from .catalog import ENTRIES
from .specs import model_key
from .specs import ResNetSpec
from ..errors import did_you_mean

if TYPE_CHECKING:
    import keras


def _weight_tags(key: str) -> tuple[str, ...]:
    from .build import active_manifest  # shipped + RESNET_KERAS_MANIFEST

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
    builder = ENTRIES[model_key(name)].function
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
            counted from the Keras graph (every Conv2D and Dense layer:
            `architecture.counts.count_macs`).
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


def model_info(name: str) -> ModelInfo:
    """Parameters, multiply-adds, input size, preprocessing and weights of a model.

    The counts are its graph's at its default input size with its default
    head, as `architecture.counts` measured and recorded them (counts.json;
    a model registered at run time is built once, symbolically, to count).

    Example:
        >>> from resnet_keras import model_info
        >>> info = model_info("resnet20")
        >>> info.trainable_params, round(info.macs / 1e6, 1)
        (269722, 40.6)
    """
    key = model_key(name)
    entry = ENTRIES[key]
    spec = entry.spec
    counted = counts.of(key)
    return ModelInfo(
        name=key,
        builder=entry.function,
        spec=spec,
        params=counted.params,
        trainable_params=counted.trainable_params,
        macs=counted.macs,
        default_size=spec.default_size,
        classes=spec.classes,
        preprocessing=spec.preprocessing,
        weights=_weight_tags(key),
    )
