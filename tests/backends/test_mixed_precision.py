"""mixed_float16 / mixed_bfloat16: the body computes in 16 bits, the head in float32.

Under a mixed global policy the `predictions` layer is built with
dtype="float32" (keras' mixed precision guide), so the softmax comes out
float32; the variables stay float32, so the same weight files load.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import make_backend_golden as golden_lib
import official_format
import resnet_keras
from make_backend_golden import relative_error

pytestmark = pytest.mark.backend

MODELS = ["resnet18", "resnet50v2", "resnet20"]
# bfloat16 keeps 8 bits of mantissa, float16 11. Measured on all three
# backends against the float32 golden: features at most 1.0e-3 (float16)
# and 7.6e-3 (bfloat16) relative error; softmax 3.1e-4 and 2.3e-3 absolute.
TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize("key", MODELS)
def test_mixed_policy_runs_with_a_float32_head(key, policy, golden, tmp_path, record):
    path = official_format.write_keras2_weights(golden_lib.build(key), tmp_path / "w.h5")
    keras.config.set_dtype_policy(policy)
    compute = keras.config.dtype_policy().compute_dtype
    size = golden_lib.input_size(key)
    model = resnet_keras.get_model(
        key, weights=str(path), classes=golden_lib.CLASSES, input_shape=(size, size, 3)
    )
    head = model.get_layer("predictions")
    assert head.dtype_policy.name == "float32"
    assert model.get_layer("conv1_conv").compute_dtype == compute
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}

    both = keras.Model(model.inputs, [model.get_layer("avg_pool").output, model.output])
    features, probabilities = both(golden_lib.preprocess(key, golden["images"]))
    assert keras.backend.standardize_dtype(features.dtype) == compute
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    features = keras.ops.convert_to_numpy(keras.ops.cast(features, "float32"))
    probabilities = keras.ops.convert_to_numpy(probabilities)
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)

    error = relative_error(features, golden[f"{key}.features"])
    record(policy, key, "features", error)
    assert error < TOLERANCE[policy]
    expected = _softmax(golden[f"{key}.logits"].astype("float64"))
    error = float(np.max(np.abs(probabilities - expected)))
    record(policy, key, "softmax", error)
    assert error < TOLERANCE[policy]


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
def test_mixed_policy_without_top_gives_compute_dtype_features(policy):
    keras.config.set_dtype_policy(policy)
    model = resnet_keras.ResNet20(include_top=False, pooling="avg")
    features = model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert keras.backend.standardize_dtype(features.dtype) == policy.split("_")[1]
    assert model.output_shape == (None, 64)
