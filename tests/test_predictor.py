"""Predictor: every runtime and precision against Keras, and from several threads.

Default run: a tiny CIFAR ResNet on each runtime (float32 within 1e-5 of
Keras, bfloat16 and int8 close, int8 graphs quantized as the README's table
says), heads and multi-output models, int8 top-1 agreement on held-out digits
(a small model trained here on real scans), and `predict` from several
threads at once (each thread gets its own input's outputs, no error). Slow: ResNet50 in the official file format, int8 pooled
features against float32 (cosine >= 0.99). The Predictor's own logic (parity
gate, arguments, "auto") is in test_predictor_contract.py.
Speed is not tested here: benchmarks/bench.py and benchmarks/predictor_threads.py measure it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import digits
import official_format
import resnet_keras
from optional import require
from quantized_layout import check_layout, record_quantized
from resnet_keras.inference import optimize
from tiny_models import cosine, images, rel_error

RNG = np.random.default_rng(7)
X = RNG.standard_normal((19, 32, 32, 3)).astype("float32")  # 19: full and partial batches
CALIBRATION = RNG.standard_normal((40, 32, 32, 3)).astype("float32")
# OpenVINO comes with the slow tier's packages (setup.cfg: test-slow), onnxruntime with the fast tier's.
OPENVINO = pytest.mark.slow
RUNTIMES = ("tensorflow", pytest.param("openvino", marks=OPENVINO), "onnxruntime")
# One worker runs this module: `predictors` converts the model once per runtime for all its tests.
pytestmark = pytest.mark.xdist_group("predictor")


@pytest.fixture(scope="module")
def tiny():
    model = resnet_keras.ResNet20(weights=None, classifier_activation=None)
    official_format.randomize(model, seed=3)  # BatchNorm statistics that are not the identity
    return model


def _needs(runtime: str) -> None:
    if runtime != "tensorflow":
        require(runtime)


class Float32Predictors:
    """`predictors(runtime)`: one float32 Predictor of `tiny` per runtime, built on first use.

    `folded[runtime]` lists the (model, precision) its build handed to
    optimize_for_inference: the README's "folds the model's BatchNorm".
    """

    def __init__(self, model):
        self.model, self.built, self.folded = model, {}, {}

    def __call__(self, runtime: str) -> resnet_keras.Predictor:
        _needs(runtime)
        if runtime not in self.built:
            real, folded = optimize.optimize_for_inference, []

            def spy(model, precision="float32"):
                folded.append((model, precision))
                return real(model, precision)

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(optimize, "optimize_for_inference", spy)
                self.built[runtime] = resnet_keras.Predictor(self.model, runtime=runtime)
            self.folded[runtime] = folded
        return self.built[runtime]


@pytest.fixture(scope="module")
def predictors(tiny):
    return Float32Predictors(tiny)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_float32_matches_keras_within_1e5(predictors, tiny, runtime):
    predictor = predictors(runtime)
    expected = tiny.predict(X, verbose=0)
    for batch_size in (1, 8, 32):  # one image per call, streams with a partial batch, one call
        actual = predictor.predict(X, batch_size=batch_size)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert rel_error(actual, expected) <= 1e-5, (runtime, batch_size)
    assert predictor.runtime == runtime and predictor.precision == "float32"
    assert predictor.parity.max_relative_error <= 1e-5 and predictor.parity.inputs == "random"
    assert predictor.parity.top1_agreement == 1.0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_compiles_the_folded_model(predictors, tiny, runtime):
    predictors(runtime)
    assert [(model is tiny, precision) for model, precision in predictors.folded[runtime]] == [(True, "float32")]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.slow
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
@pytest.mark.slow
def test_reduced_precision_stays_close(tiny, runtime, precision, min_cosine, monkeypatch):
    """Close to Keras; int8 graphs quantized as the README's runtime table says."""
    _needs(runtime)
    calibration = CALIBRATION if precision == "int8" else None
    quantized = record_quantized(runtime, monkeypatch) if calibration is not None else []
    predictor = resnet_keras.Predictor(tiny, precision, runtime, calibration=calibration)
    actual = predictor.predict(X, batch_size=8)
    expected = tiny.predict(X, verbose=0)
    assert cosine(actual, expected).min() >= min_cosine
    assert predictor.parity.min_cosine >= min_cosine
    assert predictor.parity.inputs == ("calibration" if calibration is not None else "random")
    for graph in quantized:
        check_layout(runtime, graph)
    assert len(quantized) == (calibration is not None)


@pytest.fixture(scope="module")
def trained_digits():
    return digits.trained_model()


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.slow
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
@pytest.mark.slow
def test_heads_and_pooling(include_top, pooling):
    require("openvino")
    model = resnet_keras.ResNet20(weights=None, include_top=include_top, pooling=pooling)
    expected = model.predict(X[:5], verbose=0)
    actual = resnet_keras.Predictor(model, runtime="openvino").predict(X[:5])
    assert actual.shape == expected.shape and rel_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.slow
def test_several_outputs_come_back_as_model_predict_gives_them(runtime):
    _needs(runtime)
    model = resnet_keras.feature_model(resnet_keras.ResNet20(weights=None, include_top=False))
    expected = model.predict(X[:3], verbose=0)
    actual = resnet_keras.Predictor(model, runtime=runtime).predict(X[:3])
    assert type(actual) is type(expected) and len(actual) == len(expected) > 1
    for key in expected if isinstance(expected, dict) else range(len(expected)):
        assert actual[key].shape == expected[key].shape
        assert rel_error(actual[key], expected[key]) <= 1e-5


# --- several threads (README: "safe to call from several threads") ---------------

THREADS = 4
CALLS = 25
# A batch size per OpenVINO plan that no other test here tunes, so that the
# plan forced below is the one this shape gets.
PLAN_BATCH = {"latency": 5, "streams x1": 6, "streams x2": 7}


def from_threads(predict, inputs: list) -> list:
    """`predict(x)` CALLS times for each input, each input in a thread of its own, started together."""
    start = threading.Barrier(len(inputs))

    def work(x):
        start.wait()
        return [predict(x) for _ in range(CALLS)]

    with ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(work, x) for x in inputs]
        return [future.result() for future in futures]  # a thread's exception is raised here


@pytest.mark.parametrize(
    "runtime, plan",
    [*(pytest.param("openvino", plan, marks=OPENVINO) for plan in ("latency", "streams x1", "streams x2")),
     ("onnxruntime", None), ("tensorflow", None)],
)
def test_predict_from_several_threads_gives_each_its_own_outputs(predictors, runtime, plan, monkeypatch):
    predictor = predictors(runtime)
    if plan is not None:
        from resnet_keras.inference.engines import openvino

        if plan != "latency" and predictor._engine.settings["streams"] < 2:
            pytest.skip("OpenVINO runs one stream on this machine: there is no streams plan")
        monkeypatch.setattr(openvino, "_fastest", lambda candidates, x: candidates[plan])
    inputs = [images(PLAN_BATCH.get(plan, 5), seed=100 + i) for i in range(THREADS)]
    alone = [predictor.predict(x) for x in inputs]  # one thread at a time
    assert min(rel_error(alone[0], other) for other in alone[1:]) > 0.01  # a swap would show
    results = from_threads(predictor.predict, inputs)
    wrong = sum(not np.array_equal(result, expected) for mine, expected in zip(results, alone) for result in mine)
    assert wrong == 0, f"{wrong} of {THREADS * CALLS} calls did not return their own input's outputs"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_engine_outputs_outlive_the_next_call(predictors, runtime, monkeypatch):
    """An engine's outputs are the caller's: its next call (which may reuse the
    same infer request) leaves them as they were."""
    engine = predictors(runtime)._engine
    if runtime == "openvino":  # the plan that hands out a request's own output tensors
        from resnet_keras.inference.engines import openvino

        monkeypatch.setattr(openvino, "_fastest", lambda candidates, x: candidates["latency"])
    first_input, second_input = images(PLAN_BATCH["latency"], seed=1), images(PLAN_BATCH["latency"], seed=2)
    first = engine.run(first_input)
    kept = [np.array(o) for o in first]
    engine.run(second_input)
    assert all(np.array_equal(a, b) for a, b in zip(first, kept))


@OPENVINO
def test_a_new_batch_shape_is_tuned_once_when_threads_meet_it_together(predictors, monkeypatch):
    from resnet_keras.inference.engines import openvino

    predictor = predictors("openvino")
    tuned, real = [], openvino._fastest

    def slow_fastest(candidates, x):
        tuned.append(x.shape)
        time.sleep(0.2)  # the other threads arrive while this one tunes
        return real(candidates, x)

    monkeypatch.setattr(openvino, "_fastest", slow_fastest)
    inputs = [images(11, seed=200 + i) for i in range(THREADS)]
    results = from_threads(predictor.predict, inputs)
    assert tuned == [(11, 32, 32, 3)]
    for mine, x in zip(results, inputs):
        assert all(np.array_equal(result, mine[0]) for result in mine)
        assert rel_error(mine[0], predictor.predict(x)) == 0


def test_openvino_keeps_the_fastest_candidate():
    from resnet_keras.inference.engines import openvino

    def taking(seconds):
        return lambda x: time.sleep(seconds)

    fast = taking(0.001)
    assert openvino._fastest({"slow": taking(0.02), "fast": fast, "slower": taking(0.03)}, X) is fast


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
