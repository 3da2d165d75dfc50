"""The one build function behind every builder.

validate arguments -> resolve weights (may download) -> stem -> stages ->
head -> load weights. Validation never touches the network or the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

import keras
from keras import layers

from . import blocks, validation
from ..weights import h5, resolve
from .specs import ResNetSpec
from ..errors import InvalidArgumentError


# Keras walks a functional graph recursively, one Python frame per layer on
# the path; ResNet1202's ~4,200 layers exceed Python's default limit of
# 1,000 (it passes only where another import happened to raise it). Later
# walks (predict, clone_model, save) need the same depth, so it stays raised.
_FRAMES_PER_BLOCK = 12  # generous: a bottleneck block has 10 layers
_BASE_RECURSION_LIMIT = 2_000


def _allow_graph_depth(spec: ResNetSpec) -> None:
    needed = _BASE_RECURSION_LIMIT + _FRAMES_PER_BLOCK * sum(spec.depths)
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def build(
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
) -> keras.Model:
    data_format = keras.config.image_data_format()
    validation.check_flag("include_top", include_top)
    if shortcut is not None:  # CIFAR ResNets choose option A or B
        spec = dataclasses.replace(spec, shortcut=validation.check_shortcut(shortcut))
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(
            f"`name` must be a non-empty string. Received: name={name!r}"
        )
    source = resolve.classify(weights, spec.name, include_top, manifest=manifest, offline=offline)
    weights_path, entry = source.path, source.entry
    tagged = entry is not None  # manifest weights follow keras' imagenet rules
    validation.check_pooling(pooling)
    validation.check_classes(classes, include_top=include_top, pretrained_top=tagged)
    if include_top:
        validation.check_classifier_activation(
            classifier_activation, pretrained=weights is not None
        )
    size = (entry.input_size if tagged and entry.input_size else spec.default_size)
    shape_rules = dict(
        default_size=size,
        min_size=spec.min_size,
        pretrained=tagged,
        data_format=data_format,
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
        # Opened (and, for a tag, fetched and hashed) before the slow build,
        # so a bad file fails fast; read from the same open file after it.
        opened = None
        if weights_path is not None or tagged:
            opened = stack.enter_context(resolve.open_weights(source))
        model = _graph(spec, input_tensor, input_shape, include_top, pooling,
                       classes, classifier_activation, name)
        if opened is not None:
            h5.load_from_file(model, *opened)
    return model


def _graph(spec, input_tensor, input_shape, include_top, pooling, classes,
           classifier_activation, name) -> keras.Model:
    _allow_graph_depth(spec)
    inputs = input_tensor if input_tensor is not None else layers.Input(shape=input_shape)
    x = blocks.body(inputs, spec)

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
    return keras.Model(inputs, x, name=name)


def _head_dtype() -> str | None:
    """float32 for the classifier under a mixed policy, else the global policy.

    A float16 softmax loses precision and can overflow (keras' mixed
    precision guide keeps the last layer float32; keras.applications does
    not). The variables are float32 under a mixed policy either way, so
    weight files load the same.
    """
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None
