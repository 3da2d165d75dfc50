"""The six keras variants give keras.applications' numbers on this backend.

The golden file (tests/golden/backend_outputs.npz) was written by our own
code; here keras.applications itself is the reference, computed at test
time: one official-format file (random seeded weights of the
keras.applications model, Keras 2 layout) is loaded into both models, on the
same backend, and their outputs are compared. Full-size models at a small
input keep it affordable: 64x64 without the top (the last feature map), and
224x224 with the top (logits, classifier_activation=None) for ResNet50.
"""

from __future__ import annotations

import gc

import keras
import numpy as np
import pytest

import resnet_keras
from keras_builders import KERAS_BUILDERS
from make_backend_golden import relative_error

pytestmark = [
    pytest.mark.backend,
    pytest.mark.skipif(
        keras.backend.backend() == "tensorflow",
        reason="the slow suite (tests/test_weights_core.py) compares all six with keras.applications on TensorFlow",
    ),
]

# Same backend, same weights, the same sequence of operations: the outputs
# agree to float32 rounding (measured: 0, bit for bit, on TensorFlow, JAX and
# torch). Tighter than the golden files' 1e-4: BatchNorm's epsilon at 1.1e-5
# instead of keras' 1.001e-5 moves ResNet50's outputs by 7.5e-6.
TOLERANCE = 1e-6
PREPROCESS = {
    "resnet": keras.applications.resnet.preprocess_input,
    "resnet_v2": keras.applications.resnet_v2.preprocess_input,
}


def _images(size: int) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (2, size, size, 3)).astype("float32")


def _preprocessed(key: str, size: int) -> np.ndarray:
    preprocess = PREPROCESS["resnet_v2" if key.endswith("v2") else "resnet"]
    return np.asarray(preprocess(_images(size)))


def _run(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def _compare(key, ours, theirs, x, output, record):
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in theirs.layers if layer.weights
    ]
    expected, result = _run(theirs, x), _run(ours, x)
    assert result.shape == expected.shape
    error = relative_error(result, expected)
    record("keras.apps", key, output, error)
    assert error < TOLERANCE, f"{key} {output}: relative error {error:.2e} against keras.applications"


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize("key", list(KERAS_BUILDERS))
def test_notop_feature_maps_equal_keras_applications(key, official_file, record):
    path = str(official_file(key, include_top=False))
    shape = (64, 64, 3)
    theirs = KERAS_BUILDERS[key](weights=path, include_top=False, input_shape=shape)
    ours = resnet_keras.get_model(key, weights=path, include_top=False, input_shape=shape)
    _compare(key, ours, theirs, _preprocessed(key, 64), "features", record)


def test_resnet50_logits_equal_keras_applications(official_file, record):
    path = str(official_file("resnet50", include_top=True))
    theirs = keras.applications.ResNet50(weights=path, classifier_activation=None)
    ours = resnet_keras.resnet.ResNet50(weights=path, classifier_activation=None)
    _compare("resnet50", ours, theirs, _preprocessed("resnet50", 224), "logits", record)
