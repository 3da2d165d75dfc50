"""A tiny ResNet trained on scikit-learn's digits: confident predictions on real data.

Reduced-precision checks need a model whose top-1 means something: random
weights give near-ties that any rounding flips. scikit-learn's digits are
1,797 real 8x8 scans in 10 classes, upscaled here to 24x24x3 (24 rather than
CIFAR's 32: the same accuracy, ~40% less training time).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from optional import require
from resnet_keras.architecture import build as _builder
from resnet_keras.architecture.specs import SPECS


def digits_24():
    """((x_train, y_train), (x_test, y_test)): 1,400 training and 397 held-out images in [-1, 1]."""
    datasets = require("sklearn.datasets")
    data = datasets.load_digits()
    x = np.kron(data.images / 16.0, np.ones((3, 3)))[..., None].repeat(3, axis=-1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order].astype("float32") * 2 - 1, data.target[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def trained_model():
    """(model, x_test, y_test, x_train): a one-block-per-stage ResNet after 8 epochs (~6 s)."""
    (x_train, y_train), (x_test, y_test) = digits_24()
    keras.utils.set_random_seed(0)
    spec = dataclasses.replace(
        SPECS["resnet20"], depths=(1, 1, 1), widths=(8, 16, 32), stem_width=8
    )
    model = _builder.create_model(
        spec, include_top=True, weights=None, input_tensor=None, input_shape=(24, 24, 3),
        pooling=None, classes=10, classifier_activation="softmax", name="digits",
    )
    for layer in model.layers:  # moving statistics that settle within a short run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=8, verbose=0)
    return model, x_test, y_test, x_train
