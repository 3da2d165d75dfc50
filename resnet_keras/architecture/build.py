"""The one build path behind every builder.

    create_model(spec, **builder arguments)
        check the arguments -> resolve weights= once (architecture.resolve) -> _model
    build(resolved, ...)                      (the CLI and extraction start here)
        check name and pooling -> _model
    _model: check the rules that depend on the weights (classes, activation,
        input shape) -> open (and, for a tag, fetch and verify) the weights
        -> stem -> stages -> head -> load

Nothing touches the network or the disk before every argument is checked.
Keras is imported when a graph is built, not when a builder module is
imported, so listing and describing models needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from typing import TYPE_CHECKING, Iterator

from . import validation
from .. import data_format
from .specs import ResNetSpec
from .resolve import Resolved, load_opened, open_weights, resolve

if TYPE_CHECKING:
    import keras

# Keras builds a functional model by walking its graph recursively, a Python
# frame per layer on the longest path (keras' `Function._build_map`), so
# ResNet1202's ~3,600 layers need more than Python's default limit of 1,000.
# What needs it in Keras 3.15 (tests/test_depth.py): `keras.Model(inputs,
# outputs)` and `keras.models.clone_model`; a call, predict, fit, summary,
# get_config, saving and loading weights or a .keras file do not. The limit
# is raised only around such a walk, and put back after it.
_LAYERS_PER_BLOCK = 12  # generous: a bottleneck block has 10 or 11 layers
_FRAMES_PER_LAYER = 2  # measured: a chain of layers (plain110) takes 2 frames per layer
_SPARE_FRAMES = 1_000  # keras' own frames and the caller's
_depth_lock = threading.Lock()
_depth_needs: list[int] = []  # of the walks running now
_depth_before = 0  # the limit before the first of them
_depth_set = 0  # the limit these walks set last


@contextlib.contextmanager
def graph_depth(layers: int) -> Iterator[None]:
    """Python's recursion limit high enough to walk a graph of `layers` layers, inside the block only.

    Blocks may nest or run in several threads at once: the limit is the
    highest any running block needs, and when the last one ends, what it
    was before the first began. A limit someone else set meanwhile (importing
    TensorFlow inside a block sets 3,000) is theirs: it is kept.
    """
    global _depth_before, _depth_set
    need = _SPARE_FRAMES + _FRAMES_PER_LAYER * layers
    with _depth_lock:
        if not _depth_needs:
            _depth_before = sys.getrecursionlimit()
        elif sys.getrecursionlimit() != _depth_set:
            _depth_before = max(_depth_before, sys.getrecursionlimit())
        _depth_needs.append(need)
        _depth_set = max([_depth_before, *_depth_needs])
        sys.setrecursionlimit(_depth_set)
    try:
        yield
    finally:
        with _depth_lock:
            _depth_needs.remove(need)
            if sys.getrecursionlimit() != _depth_set:  # set by someone else inside the block
                _depth_before = max(_depth_before, sys.getrecursionlimit())
            _depth_set = max([_depth_before, *_depth_needs])
            sys.setrecursionlimit(_depth_set)


def spec_layers(spec: ResNetSpec) -> int:
    """At least the layers of `spec`'s graph (stem and head included)."""
    return _LAYERS_PER_BLOCK * (sum(spec.depths) + 2)


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
    return _model(
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
    number of input channels (`weights.formats.values`).
    """
    name = resolved.spec.name if name is None else name
    validation.check_name(name)
    validation.check_pooling(pooling)
    return _model(
        resolved,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=resolved.spec.classes if classes is None else classes,
        classifier_activation=classifier_activation,
        name=name,
        adapt_input_channels=adapt_input_channels,
    )


def _model(resolved: Resolved, *, input_tensor, input_shape, pooling, classes,
           classifier_activation, name, adapt_input_channels):
    """`build` once `name` and `pooling` are checked: the rules that need the weights, then the graph."""
    spec, include_top = resolved.spec, resolved.include_top
    validation.check_adapt_input_channels(adapt_input_channels, has_weights=resolved.has_weights)
    validation.check_classes(classes, include_top=include_top, pretrained_top=resolved.pretrained)
    if include_top:
        validation.check_classifier_activation(
            classifier_activation, pretrained=resolved.has_weights
        )
    input_shape = validation.input_shape_to_build(
        input_tensor,
        input_shape,
        default_size=resolved.input_size,
        min_size=spec.min_size,
        include_top=include_top,
        pretrained=resolved.pretrained,
        adapt_input_channels=adapt_input_channels,
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

    with graph_depth(spec_layers(spec)):
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
