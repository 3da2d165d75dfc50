"""The Predictor's own promises: arguments, the float32 parity gate, the parity
report, batching, and the runtime "auto" picks.

Most tests here build an engine double that runs the Keras model itself
(tests/predictor_doubles.py): the Predictor's logic runs in milliseconds, and
an engine that strays is one line. test_predictor.py runs the real runtimes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import official_format
import resnet_keras
from optional import require
from predictor_doubles import keras_engines
from resnet_keras.errors import InvalidArgumentError, MissingDependencyError, PredictorParityError
from resnet_keras.inference import precision
from tiny_models import rel_error

RNG = np.random.default_rng(7)
X = RNG.standard_normal((19, 32, 32, 3)).astype("float32")
CALIBRATION = RNG.standard_normal((40, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny():
    model = resnet_keras.ResNet20(weights=None, classifier_activation=None)
    official_format.randomize(model, seed=3)  # BatchNorm statistics that are not the identity
    return model


def scaled(factor: float):
    """Engine outputs times `factor`: a relative error of `factor - 1` everywhere."""
    return lambda outputs: [o * np.float32(factor) for o in outputs]


# --- the float32 parity gate (README: "a float32 engine that strays beyond 1e-4 raises") ---


def test_float32_engine_beyond_1e4_raises_parity_error(tiny, monkeypatch):
    keras_engines(monkeypatch, change=scaled(1 + 1.5e-4))
    with pytest.raises(PredictorParityError, match=r"runtime='openvino' in float32 must match the Keras "
                       r"model within 0.0001 .*Received: max_relative_error=0.00015\. Use runtime='tensorflow'"):
        resnet_keras.Predictor(tiny, runtime="openvino")


def test_float32_engine_within_1e4_passes_and_reports_its_error(tiny, monkeypatch):
    keras_engines(monkeypatch, change=scaled(1 + 0.5e-4))
    predictor = resnet_keras.Predictor(tiny, runtime="openvino")
    assert predictor.parity.max_relative_error == pytest.approx(0.5e-4, rel=0.02)


def test_float32_engine_giving_nan_raises_parity_error(tiny, monkeypatch):
    keras_engines(monkeypatch, change=lambda outputs: [np.full_like(o, np.nan) for o in outputs])
    with pytest.raises(PredictorParityError, match="Received: max_relative_error=nan"):
        resnet_keras.Predictor(tiny, runtime="onnxruntime")


def test_float32_gate_covers_every_output(tiny, monkeypatch):
    """A multi-output model (C2..C4) whose engine strays in its last output only."""
    stages = resnet_keras.feature_model(tiny)
    keras_engines(monkeypatch, change=lambda outputs: [*outputs[:-1], outputs[-1] * np.float32(1 + 1.5e-4)])
    with pytest.raises(PredictorParityError, match=r"Received: max_relative_error=0.00015\."):
        resnet_keras.Predictor(stages, runtime="onnxruntime")


@pytest.mark.parametrize("precision, calibration", [("bfloat16", None), ("int8", CALIBRATION[:32])])
def test_reduced_precision_is_reported_not_gated(tiny, monkeypatch, precision, calibration):
    keras_engines(monkeypatch, change=scaled(1 + 1e-2))  # bfloat16 keeps about 3 digits
    predictor = resnet_keras.Predictor(tiny, precision, "openvino", calibration=calibration)
    assert predictor.parity.max_relative_error == pytest.approx(1e-2, rel=0.02)


# --- what the parity report measures ------------------------------------------


def test_parity_report_measures_cosine_and_top1_per_sample(tiny, monkeypatch):
    # The first sample's outputs negated: cosine -1 there, its arg-max moves.
    keras_engines(monkeypatch, change=lambda outputs: [np.concatenate([-o[:1], o[1:]]) for o in outputs])
    parity = resnet_keras.Predictor(tiny, "bfloat16", runtime="openvino").parity
    assert parity.samples == 8 and parity.inputs == "random"
    assert parity.min_cosine == pytest.approx(-1.0, abs=1e-6)
    assert parity.top1_agreement == 7 / 8
    assert parity.max_relative_error > 0.1


def test_parity_probe_is_the_first_calibration_images_for_int8_else_seeded_random(tiny, monkeypatch):
    record = keras_engines(monkeypatch)
    int8 = resnet_keras.Predictor(tiny, "int8", "openvino", calibration=CALIBRATION)
    np.testing.assert_array_equal(record.builds[0][2], CALIBRATION)  # the set the engine calibrates on
    np.testing.assert_array_equal(record.batches[0], CALIBRATION[:8])
    assert int8.parity.inputs == "calibration"
    resnet_keras.Predictor(tiny, runtime="onnxruntime")
    resnet_keras.Predictor(tiny, runtime="tensorflow")
    first, second = record.batches[1:3]
    assert first.shape == (8, 32, 32, 3) and np.array_equal(first, second)  # seeded: the same each time
    assert abs(first.std() - 1) < 0.05 and not np.array_equal(first[:1], first[1:2])


# --- predict -------------------------------------------------------------------


def test_predict_runs_batches_of_32_by_default_and_joins_them(tiny, monkeypatch):
    record = keras_engines(monkeypatch)
    predictor = resnet_keras.Predictor(tiny, runtime="tensorflow")
    x = np.concatenate([X, X, X])  # 57 images
    record.batches.clear()
    result = predictor.predict(x)
    assert [len(b) for b in record.batches] == [32, 25]
    assert rel_error(result, tiny(x, training=False)) <= 1e-6
    record.batches.clear()
    predictor.predict(x, batch_size=20)
    assert [len(b) for b in record.batches] == [20, 20, 17]


def test_defaults_are_float32_on_the_runtime_auto_picks(tiny, monkeypatch):
    record = keras_engines(monkeypatch)
    predictor = resnet_keras.Predictor(tiny)
    assert (predictor.precision, predictor.runtime) == ("float32", precision.choose("auto", "float32").name)
    assert record.builds == [(predictor.runtime, "float32", None)]


def only_installed(monkeypatch, *present: str) -> None:
    """The runtimes not in `present` look uninstalled (TensorFlow always is)."""
    for name in present:
        require(name)
    missing = {m for r in precision.RUNTIMES.values() if r.name not in present for m in r.modules}
    missing.discard("tensorflow")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))


@pytest.mark.parametrize(
    "present, float32, bfloat16, int8",
    [
        pytest.param(("openvino", "onnxruntime"), "openvino", "openvino", "openvino",
                     marks=pytest.mark.slow),  # OpenVINO comes with the slow tier's packages
        (("onnxruntime",), "onnxruntime", "tensorflow", "onnxruntime"),
        ((), "tensorflow", "tensorflow", None),
    ],
)
def test_auto_takes_the_first_installed_runtime_in_the_readme_order(monkeypatch, present, float32, bfloat16, int8):
    only_installed(monkeypatch, *present)
    assert precision.choose("auto", "float32").name == float32
    assert precision.choose("auto", "bfloat16").name == bfloat16
    if int8 is None:
        with pytest.raises(MissingDependencyError, match=r"int8.*resnet-keras\[openvino\].*resnet-keras\[onnxruntime\]"):
            precision.choose("auto", "int8")
    else:
        assert precision.choose("auto", "int8").name == int8


def test_a_runtime_not_installed_names_its_extra(monkeypatch, tiny):
    only_installed(monkeypatch, "onnxruntime")
    with pytest.raises(MissingDependencyError, match=r'runtime=.openvino. needs .*pip install "resnet-keras\[openvino\]"'):
        resnet_keras.Predictor(tiny, runtime="openvino")
    only_installed(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"int8.*resnet-keras\[openvino\].*resnet-keras\[onnxruntime\]"):
        resnet_keras.Predictor(tiny, "int8", calibration=CALIBRATION)


BAD = [
    (dict(precision="float16"), r"`precision` must be one of .*Received: precision='float16'"),
    (dict(runtime="tensorrt"), r"`runtime` must be 'auto' or one of .*Received: runtime='tensorrt'"),
    (dict(runtime="onnxruntime", precision="bfloat16"), r"runs the precisions .*Received: precision='bfloat16'"),
    (dict(runtime="tensorflow", precision="int8"), r"runs the precisions .*Received: precision='int8'"),
    (dict(precision="int8"), r"needs `calibration`.*Received: calibration=None"),
    (dict(precision="int8", calibration=CALIBRATION[:31]), r"at least 32 images.*Received: 31"),
    (dict(precision="int8", calibration=CALIBRATION[:, :16]), r"must have shape \(n, 32, 32, 3\).*Received: shape \(40, 16, 32, 3\)"),
    (dict(precision="int8", calibration=np.full((40, 32, 32, 3), np.nan)), r"must be finite.*Received: 122880 non-finite"),
    (dict(precision="int8", calibration="images/"), r"numeric array of images of shape \(n, 32, 32, 3\).*Received: str"),
    (dict(calibration=CALIBRATION), r"used by precision='int8' only"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_arguments_fail_before_any_conversion(tiny, kwargs, message, monkeypatch):
    monkeypatch.setattr(precision.Runtime, "build", lambda *a: pytest.fail("built before validation"))
    with pytest.raises(InvalidArgumentError, match=message):
        resnet_keras.Predictor(tiny, **kwargs)


def test_another_keras_backend_is_refused_before_any_conversion(tiny, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(precision.Runtime, "build", lambda *a: pytest.fail("built before validation"))
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


@pytest.mark.slow
def test_predict_takes_what_model_predict_takes(tf_predictor, tiny):
    images = (RNG.integers(0, 255, (3, 32, 32, 3))).astype("uint8")  # ints are cast, as keras does
    assert rel_error(tf_predictor.predict(images), tiny.predict(images, verbose=0)) <= 1e-5
    assert rel_error(tf_predictor.predict(X.tolist()), tiny.predict(X, verbose=0)) <= 1e-5
    assert "runtime='tensorflow'" in repr(tf_predictor) and "parity" in repr(tf_predictor)
