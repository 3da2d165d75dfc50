"""Small models for the Grad-CAM tests: tiny zoo specs and the heads users put on them.

Every model gets seeded random weights (`official_format.randomize`), so
BatchNorm is not the identity and the heatmaps are not trivial.
"""

from __future__ import annotations

import dataclasses

import keras

import official_format
from resnet_keras.architecture import build as _builder
from resnet_keras.architecture.specs import SPECS
from resnet_keras.architecture.specs import image_shape

CLASSES = 5
# kind -> (spec, input size, the layer of the last feature stage, by the naming contract)
TINY = {
    "v1": (dataclasses.replace(SPECS["resnet50"], depths=(1, 1, 1, 1), widths=(4, 4, 4, 8), stem_width=8),
           96, "conv5_block1_out"),
    "v2": (dataclasses.replace(SPECS["resnet50v2"], depths=(1, 1, 1, 2), widths=(4, 4, 4, 8), stem_width=8),
           96, "post_relu"),
    "basic": (dataclasses.replace(SPECS["resnet20"], depths=(1, 1, 1), widths=(8, 16, 32), stem_width=8),
              32, "conv4_block1_out"),
}
HEADS = ("top", "logits", "sigmoid", "avg_dense", "nested", "sequential")


def input_shape(kind: str) -> tuple:
    return image_shape(TINY[kind][1], keras.config.image_data_format())


def backbone(kind: str, *, include_top: bool = False, activation: str | None = "softmax", pooling="avg"):
    spec = TINY[kind][0]
    return _builder.create_model(
        spec, include_top=include_top, weights=None, input_tensor=None, input_shape=input_shape(kind),
        pooling=None if include_top else pooling, classes=CLASSES, classifier_activation=activation,
        name=f"tiny_{kind}",
    )


def model(kind: str, head: str, seed: int = 0) -> keras.Model:
    """A tiny `kind` ResNet with `head`; the classifier is always the last Dense."""
    if head in ("top", "logits", "sigmoid"):
        built = backbone(kind, include_top=True, activation={"top": "softmax", "logits": None}.get(head, head))
    elif head == "avg_dense":  # flat: the user's Dense on the pooled output
        base = backbone(kind)
        built = keras.Model(base.input, keras.layers.Dense(CLASSES, activation="softmax")(base.output))
    elif head == "nested":  # keras.io's transfer-learning recipe
        base = backbone(kind)
        inputs = keras.Input(input_shape(kind))
        x = keras.layers.Dropout(0.2)(base(inputs, training=False))
        built = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="new_head")(x))
    elif head == "sequential":
        built = keras.Sequential([keras.Input(input_shape(kind)), backbone(kind), keras.layers.Dense(CLASSES)])
    else:
        raise KeyError(head)
    official_format.randomize(built, seed=seed)
    return built


def classifier(model: keras.Model) -> keras.layers.Dense:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]


def feature_and_pooled(model: keras.Model, stage: str) -> keras.Model:
    """x -> (the `stage` layer's feature map, the classifier's input), through the backbone,
    as the keras.io recipe builds it: for nested heads, on the inner model."""
    inner = next((layer for layer in model.layers if isinstance(layer, keras.Model)), model)
    stage = inner.get_layer(stage).output
    pooled = inner.get_layer("avg_pool").output
    return keras.Model(inner.inputs, [stage, pooled])


def with_weights(kind: str, head: str, source: keras.Model) -> keras.Model:
    """The same model built again (e.g. under another dtype policy) with `source`'s weights."""
    copy = model(kind, head)
    copy.set_weights(source.get_weights())
    return copy
