"""The model of a spec: its body (`blocks`), its head, the Keras model around them, and the recursion limit its walks need.

`graph` is what the builder calls (`build._model`); the layer names and
their order are the blocks' (see there: the contract with the weight files).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

import keras
from keras import layers

from .blocks import FEATURE_STAGES, body
from .specs import ResNetSpec

_LAYERS_PER_BLOCK = 12  # generous: a bottleneck block has 10 or 11 layers


def spec_layers(spec: ResNetSpec) -> int:
    """At least the layers of `spec`'s graph (stem and head included)."""
    return _LAYERS_PER_BLOCK * (sum(spec.depths) + 2)


def graph(spec, input_tensor, input_shape, include_top, pooling, classes,
          classifier_activation, name) -> keras.Model:
    inputs = input_tensor if input_tensor is not None else layers.Input(shape=input_shape)
    x, features = body(inputs, spec)

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
    setattr(model, FEATURE_STAGES, tuple(features))
    return model


def _head_dtype() -> str | None:
    """float32 for the classifier under a mixed policy, else the global policy.

    A float16 softmax loses precision and can overflow (keras' mixed
    precision guide keeps the last layer float32; keras.applications does
    not). The variables are float32 under a mixed policy either way, so
    weight files load the same.
    """
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None


# --------------------------------------------------------------------------
# Python's recursion limit, raised only around a walk of a deep Keras graph.
#
# Keras builds a functional model by walking its graph recursively, a Python
# frame per layer on the longest path (keras' `Function._build_map`), so
# ResNet1202's ~3,600 layers need more than Python's default limit of 1,000.
# What needs it in Keras 3.15 (tests/test_depth.py): `keras.Model(inputs,
# outputs)` and `keras.models.clone_model`; a call, predict, fit, summary,
# get_config, saving and loading weights or a .keras file do not. The limit
# is raised only around such a walk, and put back after it.

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
