"""Every backend gives TensorFlow's numbers (tests/golden/backend_outputs.npz).

keras #18451: a pretrained application gave wrong predictions on the torch
backend only. Here each registered model, with seeded weights, must give the
golden TensorFlow outputs on this backend within GOLDEN_TOLERANCE; so must
the weight-file path, preprocessing, decoding and feature models.
"""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest

import make_backend_golden as golden_lib
import official_format
import resnet_keras
from make_backend_golden import GOLDEN_TOLERANCE, relative_error

pytestmark = pytest.mark.backend

# One model per block kind / stem / shortcut option, for the slower checks.
WEIGHTS_FILE_MODELS = ["resnet18", "resnet50", "resnet50v2", "resnet20"]
FEATURE_MODELS = ["resnet34", "resnet50v2", "resnet20"]


def test_fixture_covers_every_registered_model(golden):
    expected = set(resnet_keras.list_models()) - set(golden_lib.SKIPPED)
    stored = {name.split(".")[0] for name in golden if name != "images"}
    assert stored == expected
    assert golden_lib.GOLDEN.stat().st_size < 1_000_000
    assert golden["images"].dtype == np.uint8


@pytest.mark.parametrize("key", golden_lib.variants())
def test_outputs_match_tensorflow_golden(key, golden, record):
    model = golden_lib.build(key)
    result = golden_lib.outputs(model, golden_lib.preprocess(key, golden["images"]))
    for name, value in result.items():
        expected = golden[f"{key}.{name}"]
        assert value.shape == expected.shape
        error = relative_error(value, expected)
        record("golden", key, name, error)
        assert error < GOLDEN_TOLERANCE, f"{key} {name}: relative error {error:.2e}"


def _without_head(model):
    """What `write_keras2_weights` needs of a model, without `predictions`."""
    return types.SimpleNamespace(
        layers=[layer for layer in model.layers if layer.name != "predictions"]
    )


def _call(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("key", WEIGHTS_FILE_MODELS)
def test_official_format_files_give_golden_outputs(key, golden, tmp_path, record):
    """weights=<file> (the builder's loader) with and without the top."""
    source = golden_lib.build(key)
    top = official_format.write_keras2_weights(source, tmp_path / "top.h5")
    notop = official_format.write_keras2_weights(_without_head(source), tmp_path / "notop.h5")
    size = golden_lib.input_size(key)
    x = golden_lib.preprocess(key, golden["images"])

    pooled = resnet_keras.get_model(
        key, weights=str(notop), include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    error = relative_error(_call(pooled, x), golden[f"{key}.features"])
    record("weights file", key, "features", error)
    assert error < GOLDEN_TOLERANCE

    classifier = resnet_keras.get_model(
        key,
        weights=str(top),
        classes=golden_lib.CLASSES,
        classifier_activation=None,
        input_shape=(size, size, 3),
    )
    error = relative_error(_call(classifier, x), golden[f"{key}.logits"])
    record("weights file", key, "logits", error)
    assert error < GOLDEN_TOLERANCE


@pytest.mark.parametrize("key", FEATURE_MODELS)
def test_feature_model_stages_pool_to_golden_features(key, golden, record):
    model = golden_lib.build(key)
    info = resnet_keras.feature_info(model)
    features = resnet_keras.feature_model(model)
    out = features(golden_lib.preprocess(key, golden["images"]))
    assert list(out) == [f.name for f in info]
    size = golden_lib.input_size(key)
    for f in info:
        assert tuple(out[f.name].shape) == (2, size // f.stride, size // f.stride, f.channels)
    # The last stage, averaged over space, is what pooling="avg" returns.
    last = keras.ops.convert_to_numpy(out[info[-1].name])
    error = relative_error(last.mean(axis=(1, 2)), golden[f"{key}.features"])
    record("feature model", key, info[-1].name, error)
    assert error < GOLDEN_TOLERANCE


@pytest.mark.parametrize("key", ["resnet50", "resnet50v2", "resnet20"])
def test_optimize_for_inference_keeps_golden_logits(key, golden, record):
    """BatchNorm folded into the convs (float32): the same function."""
    fused = resnet_keras.optimize_for_inference(golden_lib.build(key))
    logits = _call(fused, golden_lib.preprocess(key, golden["images"]))
    error = relative_error(logits, golden[f"{key}.logits"])
    record("fused BN", key, "logits", error)
    assert error < GOLDEN_TOLERANCE


PREPROCESSORS = [
    resnet_keras.resnet.preprocess_input,
    resnet_keras.resnet_v2.preprocess_input,
    resnet_keras.resnet_small.preprocess_input,
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("preprocess", PREPROCESSORS, ids=["caffe", "tf", "torch"])
def test_preprocess_input_on_backend_tensors_equals_numpy(preprocess, data_format, golden):
    images = golden["images"][:, :8, :8, :]
    if data_format == "channels_first":
        images = np.transpose(images, (0, 3, 1, 2))
    expected = preprocess(images.astype("float32"), data_format=data_format)
    for tensor in (
        keras.ops.convert_to_tensor(images),  # uint8: becomes floatx
        keras.ops.convert_to_tensor(images.astype("float32")),
    ):
        result = preprocess(tensor, data_format=data_format)
        assert keras.ops.is_tensor(result)
        assert keras.backend.standardize_dtype(result.dtype) == "float32"
        np.testing.assert_allclose(keras.ops.convert_to_numpy(result), expected, rtol=1e-6, atol=1e-5)


def test_decode_predictions_reads_backend_tensors():
    scores = np.full((2, 1000), 1e-4, dtype="float32")
    scores[0, 386], scores[0, 101] = 0.9, 0.05  # African_elephant, tusker
    scores[1, 134] = 0.7  # crane (the bird)
    decoded = resnet_keras.resnet.decode_predictions(keras.ops.convert_to_tensor(scores), top=2)
    assert [d[:2] for d in decoded[0]] == [
        ("n02504458", "African_elephant"),
        ("n01871265", "tusker"),
    ]
    assert decoded[1][0][:2] == ("n02012849", "crane")
    assert decoded[0][0][2] == pytest.approx(0.9)
