"""The one build path behind every builder.

    create_model(spec, **builder arguments)
        check the arguments -> resolve weights= once (weights.resolve) -> build
    build(resolved, ...)
        check the shape arguments against the record -> open (and, for a tag,
        fetch and verify) the weights -> stem -> stages -> head -> load

Nothing touches the network or the disk before every argument is checked.
Keras is imported when a graph is built, not when a builder module is
imported, so listing and describing models needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import TYPE_CHECKING

from . import validation
from .. import data_format
from .specs import ResNetSpec
from ..weights.resolve import Resolved, load_opened, open_weights, resolve

if TYPE_CHECKING:
    import keras

# Keras walks a functional graph recursively, one Python frame per layer on
# the path, and ResNet1202's ~4,200 layers exceed Python's default limit of
# 1,000. Later walks (predict, clone_model, save) need the same depth, so it
# stays raised.
_FRAMES_PER_BLOCK = 12  # generous: a bottleneck block has 10 layers
_BASE_RECURSION_LIMIT = 2_000


def _allow_graph_depth(spec: ResNetSpec) -> None:
    needed = _BASE_RECURSION_LIMIT + _FRAMES_PER_BLOCK * sum(spec.depths)
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def create_model(
    spec: ResNetSpec,
    *,
    include_top: bool,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name: str,
    manifest=None,
    offline: bool | None = None,
    shortcut: str | None = None,
    adapt_input_channels: bool = False,
):
    """What every builder calls with its spec and its arguments."""
    validation.check_flag("include_top", include_top)
    if shortcut is not None:  # CIFAR ResNets choose option A or B
        spec = dataclasses.replace(spec, shortcut=validation.check_shortcut(shortcut))
    validation.check_name(name)
    validation.check_pooling(pooling)
    resolved = resolve(spec, weights, include_top=include_top, manifest=manifest, offline=offline)
    return build(
        resolved,
        adapt_input_channels=adapt_input_channels,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


def build(
    resolved: Resolved,
    *,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int | None = None,
    classifier_activation="softmax",
    name: str | None = None,
    adapt_input_channels: bool = False,
):
    """The Keras model that `resolved` describes, with its weights loaded.

    `classes` and `name` default to the spec's (as its builder's defaults do).
    `adapt_input_channels`: load 3-channel weights into a stem of any
    number of input channels (`weights.adapt`).
    """
    spec, include_top = resolved.spec, resolved.include_top
    name = spec.name if name is None else name
    classes = spec.classes if classes is None else classes
    validation.check_name(name)
    validation.check_pooling(pooling)
    validation.check_adapt_input_channels(adapt_input_channels, has_weights=resolved.has_weights)
    validation.check_classes(classes, include_top=include_top, pretrained_top=resolved.pretrained)
    if include_top:
        validation.check_classifier_activation(
            classifier_activation, pretrained=resolved.has_weights
        )
    shape_rules = dict(
        default_size=resolved.input_size,
        min_size=spec.min_size,
        pretrained=resolved.pretrained,
        data_format=data_format.current(),
        adapt_input_channels=adapt_input_channels,
    )
    if input_tensor is not None:
        tensor_shape = validation.check_input_tensor(input_tensor, input_shape)
        # keras lets a tensor of any valid size through, head or not.
        validation.normalize_input_shape(tensor_shape, include_top=False, **shape_rules)
    else:
        input_shape = validation.normalize_input_shape(
            input_shape, include_top=include_top, **shape_rules
        )
    with contextlib.ExitStack() as stack:
        # Read once (and, for a tag, fetched and hashed) before the slow build,
        # so a bad file fails fast; loaded from those same bytes after it.
        opened = stack.enter_context(open_weights(resolved)) if resolved.has_weights else None
        model = _graph(spec, input_tensor, input_shape, include_top, pooling,
                       classes, classifier_activation, name)
        if opened is not None:
            load_opened(model, resolved, *opened, adapt_input_channels=adapt_input_channels)
    return model


def build_pooled(resolved: Resolved, *, pooling: str | None, size: int | None = None):
    """The model without its top, globally pooled, at a fixed input size.

    A fixed size so that images can be batched: the size the weights were
    trained at unless `size` says otherwise. What the CLI's `features` and
    `export --pooling` and `resnet_keras.extraction` build.
    """
    shape = data_format.image_shape(size or resolved.input_size, data_format.current())
    return build(resolved, pooling=pooling, input_shape=shape)


def _graph(spec, input_tensor, input_shape, include_top, pooling, classes,
           classifier_activation, name) -> keras.Model:
    import keras
    from keras import layers

    from . import blocks

    _allow_graph_depth(spec)
    inputs = input_tensor if input_tensor is not None else layers.Input(shape=input_shape)
    x, features = blocks.body(inputs, spec)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(
            classes,
            activation=classifier_activation,
            name="predictions",
            dtype=_head_dtype(),
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        # Like keras: the model starts at the tensor's own source inputs.
        inputs = keras.utils.get_source_inputs(input_tensor)
    model = keras.Model(inputs, x, name=name)
    # What architecture.features reads; a clone or a .keras round trip drops it.
    setattr(model, blocks.FEATURE_STAGES, tuple(features))
    return model


def _head_dtype() -> str | None:
    """float32 for the classifier under a mixed policy, else the global policy.

    A float16 softmax loses precision and can overflow (keras' mixed
    precision guide keeps the last layer float32; keras.applications does
    not). The variables are float32 under a mixed policy either way, so
    weight files load the same.
    """
    import keras

    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None
