"""Tiny models and the numbers the inference tests hold them to.

`tiny_model` builds any registered variant at its smallest (one block per
stage, widths from 4, 32x32 input) with seeded non-trivial weights and
BatchNorm statistics; `rel_error` and `cosine` are the measures the README's
bounds are stated in.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import official_format
from resnet_keras.architecture import build as _builder
from resnet_keras.architecture.specs import SPECS


def rel_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def tiny_spec(name: str):
    """One block per stage, widths 4, 8, 16, ... (doubling, as option A needs)."""
    spec = SPECS[name]
    stages = len(spec.depths)
    return dataclasses.replace(
        spec,
        depths=(1,) * stages,
        widths=tuple(4 * 2**i for i in range(stages)),
        stem_width=4,
    )


def tiny_model(name, *, include_top=True, pooling=None, seed=0, classes=7, activation=None):
    model = _builder.create_model(
        tiny_spec(name),
        include_top=include_top,
        weights=None,
        input_tensor=None,
        input_shape=(32, 32, 3),
        pooling=pooling,
        classes=classes,
        classifier_activation=activation,
        name=name,
    )
    official_format.randomize(model, seed=seed)
    return model


def images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, (n, size, size, 3)).astype("float32")


def fused_error(name: str, model) -> tuple[object, float]:
    """(optimize_for_inference(model), the relative error of its outputs) on seeded random weights.

    `model` (the registry's `name` at its default size, classifying to
    logits) is randomized in place (official_format.randomize, seed 1). Past
    100 blocks, 600 random residual branches overflow float32 (ResNet1202):
    the last BN of each branch is damped, as a trained deep net's small
    residuals are.
    """
    import resnet_keras

    official_format.randomize(model, seed=1)
    if sum(SPECS[name].depths) > 100:
        for layer in model.layers:
            if layer.name.endswith("_2_bn"):
                layer.gamma.assign(layer.gamma * 0.05)
                layer.beta.assign(layer.beta * 0.05)
    x = images(n=2, size=SPECS[name].default_size)
    fused = resnet_keras.optimize_for_inference(model)
    return fused, rel_error(fused.predict_on_batch(x), model.predict_on_batch(x))
