"""Predictor: every runtime and precision against Keras, and every bad argument.

Default run: a tiny CIFAR ResNet on each runtime (float32 within 1e-5 of
Keras, bfloat16 and int8 close), heads and multi-output models, the typed
errors, and int8 top-1 agreement on held-out digits (a small model trained
here on real scans). Slow: ResNet50 in the official file format, int8 pooled
features against float32 (cosine >= 0.99).
Speed is not tested here: benchmarks/bench.py measures it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import digits
import official_format
import resnet_keras
from optional import require
from resnet_keras.errors import InvalidArgumentError, MissingDependencyError
from resnet_keras.predictor import runtimes
from test_inference import cosine, rel_error

RNG = np.random.default_rng(7)
X = RNG.standard_normal((19, 32, 32, 3)).astype("float32")  # 19: full and partial batches
CALIBRATION = RNG.standard_normal((40, 32, 32, 3)).astype("float32")
RUNTIME_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorflow": "tensorflow"}


@pytest.fixture(scope="module")
def tiny():
    model = resnet_keras.ResNet20(weights=None, classifier_activation=None)
    official_format.randomize(model, seed=3)  # BatchNorm statistics that are not the identity
    return model


def _needs(runtime: str) -> None:
    if runtime != "tensorflow":
        require(RUNTIME_MODULES[runtime])


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino", "onnxruntime"])
def test_float32_matches_keras_within_1e5(tiny, runtime):
    _needs(runtime)
    predictor = resnet_keras.Predictor(tiny, runtime=runtime)
    expected = tiny.predict(X, verbose=0)
    for batch_size in (1, 8, 32):  # one image per call, streams with a partial batch, one call
        actual = predictor.predict(X, batch_size=batch_size)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert rel_error(actual, expected) <= 1e-5, (runtime, batch_size)
    assert predictor.runtime == runtime and predictor.precision == "float32"
    assert predictor.parity.max_relative_error <= 1e-5 and predictor.parity.inputs == "random"
    assert predictor.parity.top1_agreement == 1.0


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_openvino_results_survive_tensorflow_reusing_memory(tiny, precision):
    """OpenVINO's converted constants share the folded model's TensorFlow buffers.

    If the engine let that model go, TensorFlow would reuse the memory and the
    weights would change under OpenVINO: garbage outputs a while later.
    """
    require("openvino")
    import gc

    import tensorflow as tf

    predictor = resnet_keras.Predictor(tiny, precision, runtime="openvino")
    expected = tiny.predict(X, verbose=0)
    gc.collect()
    for size in (1, 3, 7, 64):  # TensorFlow allocates (and reuses) buffers of many sizes
        tiny.predict(X[:size % len(X) or 1], verbose=0)
        [tf.random.uniform((size, 1000)) for _ in range(20)]
    assert cosine(predictor.predict(X), expected).min() >= 0.999


@pytest.mark.parametrize(
    "runtime, precision, min_cosine",
    [("tensorflow", "bfloat16", 0.999), ("openvino", "bfloat16", 0.999),
     ("openvino", "int8", 0.99), ("onnxruntime", "int8", 0.99)],
)
def test_reduced_precision_stays_close(tiny, runtime, precision, min_cosine):
    _needs(runtime)
    calibration = CALIBRATION if precision == "int8" else None
    predictor = resnet_keras.Predictor(tiny, precision, runtime, calibration=calibration)
    actual = predictor.predict(X, batch_size=8)
    expected = tiny.predict(X, verbose=0)
    assert cosine(actual, expected).min() >= min_cosine
    assert predictor.parity.min_cosine >= min_cosine
    assert predictor.parity.inputs == ("calibration" if calibration is not None else "random")


@pytest.fixture(scope="module")
def trained_digits():
    return digits.trained_model()


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_int8_agrees_with_float32_on_held_out_digits(runtime, trained_digits):
    """A trained model, real held-out scans: int8 top-1 equals float32 top-1 on >= 99%."""
    _needs(runtime)
    model, x_test, _, x_train = trained_digits
    predictor = resnet_keras.Predictor(model, "int8", runtime, calibration=x_train[:300])
    expected = model.predict(x_test, verbose=0)
    actual = predictor.predict(x_test)
    agreement = float(np.mean(actual.argmax(1) == expected.argmax(1)))
    print(f"INT8 {runtime}: top-1 agreement {agreement:.4f} on {len(x_test)} held-out digits, "
          f"min cosine {cosine(actual, expected).min():.5f}")
    assert agreement >= 0.99


@pytest.mark.parametrize("include_top, pooling", [(False, "avg"), (False, None)])
def test_heads_and_pooling(include_top, pooling):
    require("openvino")
    model = resnet_keras.ResNet20(weights=None, include_top=include_top, pooling=pooling)
    expected = model.predict(X[:5], verbose=0)
    actual = resnet_keras.Predictor(model, runtime="openvino").predict(X[:5])
    assert actual.shape == expected.shape and rel_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_several_outputs_come_back_as_model_predict_gives_them(runtime):
    _needs(runtime)
    model = resnet_keras.feature_model(resnet_keras.ResNet20(weights=None, include_top=False))
    expected = model.predict(X[:3], verbose=0)
    actual = resnet_keras.Predictor(model, runtime=runtime).predict(X[:3])
    assert type(actual) is type(expected) and len(actual) == len(expected) > 1
    for key in expected if isinstance(expected, dict) else range(len(expected)):
        assert actual[key].shape == expected[key].shape
        assert rel_error(actual[key], expected[key]) <= 1e-5


def test_auto_takes_the_first_installed_runtime_in_order(monkeypatch, tiny):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert runtimes.choose("auto", "bfloat16").name == "tensorflow"
    assert runtimes.choose("auto", "int8").name == "onnxruntime"
    with pytest.raises(MissingDependencyError, match=r'runtime=.openvino. needs .*pip install "resnet-keras\[openvino\]"'):
        resnet_keras.Predictor(tiny, runtime="openvino")


def test_no_int8_runtime_names_the_extras(monkeypatch, tiny):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("openvino", "onnxruntime") else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"int8.*resnet-keras\[openvino\].*resnet-keras\[onnxruntime\]"):
        resnet_keras.Predictor(tiny, "int8", calibration=CALIBRATION)


BAD = [
    (dict(precision="float16"), r"`precision` must be one of .*Received: precision='float16'"),
    (dict(runtime="tensorrt"), r"`runtime` must be 'auto' or one of .*Received: runtime='tensorrt'"),
    (dict(runtime="onnxruntime", precision="bfloat16"), r"runs the precisions .*Received: precision='bfloat16'"),
    (dict(runtime="tensorflow", precision="int8"), r"runs the precisions .*Received: precision='int8'"),
    (dict(precision="int8"), r"needs `calibration`.*Received: calibration=None"),
    (dict(precision="int8", calibration=CALIBRATION[:5]), r"at least 32 images.*Received: 5"),
    (dict(precision="int8", calibration=CALIBRATION[:, :16]), r"must have shape \(n, 32, 32, 3\).*Received: shape \(40, 16, 32, 3\)"),
    (dict(precision="int8", calibration=np.full((40, 32, 32, 3), np.nan)), r"must be finite.*Received: 122880 non-finite"),
    (dict(precision="int8", calibration="images/"), r"numeric array of images of shape \(n, 32, 32, 3\).*Received: str"),
    (dict(calibration=CALIBRATION), r"used by precision='int8' only"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_arguments_fail_before_any_conversion(tiny, kwargs, message, monkeypatch):
    monkeypatch.setattr(runtimes.Runtime, "build", lambda *a: pytest.fail("built before validation"))
    with pytest.raises(InvalidArgumentError, match=message):
        resnet_keras.Predictor(tiny, **kwargs)


def test_another_keras_backend_is_refused_before_any_conversion(tiny, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(runtimes.Runtime, "build", lambda *a: pytest.fail("built before validation"))
    with pytest.raises(InvalidArgumentError, match="needs the TensorFlow backend.*Received: KERAS_BACKEND='jax'"):
        resnet_keras.Predictor(tiny, runtime="tensorflow")


def test_a_model_with_two_inputs_is_refused():
    import keras

    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(InvalidArgumentError, match="must have one input.*Received: a model with 2 inputs"):
        resnet_keras.Predictor(model, runtime="tensorflow")


@pytest.fixture(scope="module")
def tf_predictor(tiny):
    return resnet_keras.Predictor(tiny, runtime="tensorflow")


@pytest.mark.parametrize(
    "x, batch_size, message",
    [
        (X[:, :8], 32, r"`x` must have shape \(n, 32, 32, 3\).*Received: shape \(19, 8, 32, 3\)"),
        (X[0], 32, r"Received: shape \(32, 32, 3\)"),
        (X[:0], 32, r"at least one image"),
        ([["a"]], 32, r"numeric array .*cannot read as float32"),
        (X, 0, r"`batch_size` must be a positive integer. Received: batch_size=0"),
        (X, True, r"Received: batch_size=True"),
        (X, 2.5, r"Received: batch_size=2.5"),
    ],
)
def test_predict_refuses_bad_input(tf_predictor, x, batch_size, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tf_predictor.predict(x, batch_size=batch_size)


def test_predict_takes_what_model_predict_takes(tf_predictor, tiny):
    images = (RNG.integers(0, 255, (3, 32, 32, 3))).astype("uint8")  # ints are cast, as keras does
    assert rel_error(tf_predictor.predict(images), tiny.predict(images, verbose=0)) <= 1e-5
    assert rel_error(tf_predictor.predict(X.tolist()), tiny.predict(X, verbose=0)) <= 1e-5
    assert "runtime='tensorflow'" in repr(tf_predictor) and "parity" in repr(tf_predictor)


@pytest.mark.slow
def test_int8_resnet50_pooled_features_on_an_official_format_file(official_file):
    """Pooled ResNet50 features, weights from an official-format file: int8 cosine >= 0.99."""
    require("openvino")
    path = official_file("resnet50", include_top=False)
    model = resnet_keras.ResNet50(weights=str(path), include_top=False, pooling="avg")
    pixels = np.random.default_rng(0).integers(0, 256, (96, 224, 224, 3)).astype("float32")
    images = resnet_keras.resnet.preprocess_input(pixels)
    predictor = resnet_keras.Predictor(model, "int8", calibration=images[:64])
    expected = model.predict(images[64:], verbose=0)
    actual = predictor.predict(images[64:])
    low = cosine(actual, expected).min()
    print(f"INT8 resnet50 pooled features ({predictor.runtime}): min cosine {low:.5f} on 32 images")
    assert low >= 0.99
