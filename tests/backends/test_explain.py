"""grad_cam on every backend (TensorFlow: GradientTape, JAX: jax.grad, torch: autograd).

The reference needs no autodiff: behind a global average pool and a Dense
layer, d(logit c)/d(A[i, j, k]) = W[k, c] / (h * w) exactly, so the channel
weights are the classifier's column divided by the map's area.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import explain_models as zoo
import resnet_keras

pytestmark = pytest.mark.backend

TOLERANCE = 1e-5


def analytic_grad_cam(model, kind, x, class_index):
    stage = zoo.feature_and_pooled(model, zoo.TINY[kind][2])
    a = keras.ops.convert_to_numpy(stage(x, training=False)[0]).astype("float64")
    kernel = keras.ops.convert_to_numpy(zoo.classifier(model).kernel).astype("float64")
    channels_first = keras.config.image_data_format() == "channels_first"
    if channels_first:
        a = a.transpose(0, 2, 3, 1)
    alpha = kernel[:, class_index].T / (a.shape[1] * a.shape[2])
    cam = np.maximum(np.einsum("nc,nhwc->nhw", alpha, a), 0.0).astype("float32")
    size = x.shape[2:] if channels_first else x.shape[1:3]
    cam = keras.ops.convert_to_numpy(keras.ops.image.resize(cam[..., None], size, data_format="channels_last"))[..., 0]
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peak > 0, peak, 1.0)[:, None, None]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kind, head", [("v1", "top"), ("basic", "nested"), ("v2", "sequential")])
def test_grad_cam_agrees_with_the_analytic_gradient(kind, head, data_format, record):
    keras.config.set_image_data_format(data_format)  # restored by conftest
    model = zoo.model(kind, head)
    x = np.random.default_rng(0).normal(size=(3, *zoo.input_shape(kind))).astype("float32")
    expected = analytic_grad_cam(model, kind, x, [0, 3, 4])
    assert expected.std() > 0.05
    heatmaps = resnet_keras.grad_cam(model, x, [0, 3, 4])
    error = float(np.abs(heatmaps - expected).max())
    record("grad_cam", f"{kind}-{head}", data_format[9:], error)
    assert heatmaps.dtype == np.float32 and error < TOLERANCE
    both = resnet_keras.grad_cam(model, x, [[0, 1], [3, 1], [4, 1]])
    np.testing.assert_allclose(both[:, 0], heatmaps, atol=1e-6, rtol=0)


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 5e-2)])
def test_grad_cam_under_mixed_precision(policy, tolerance, record):
    model = zoo.model("basic", "nested")
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    expected = resnet_keras.grad_cam(model, x, [0, 1, 2, 3])
    keras.config.set_dtype_policy(policy)  # restored by conftest
    heatmaps = resnet_keras.grad_cam(zoo.with_weights("basic", "nested", model), x, [0, 1, 2, 3])
    error = float(np.abs(heatmaps - expected).max())
    record("grad_cam", "basic-nested", policy[6:], error)
    assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all() and error < tolerance

