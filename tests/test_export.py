"""export_for_inference: the exported artifact computes what the Keras model computes."""

from __future__ import annotations

import numpy as np
import pytest

import resnet_keras
from optional import require
from resnet_keras.errors import ExportParityError, InvalidArgumentError
from resnet_keras.inference.export import export_for_inference
from tiny_models import images, rel_error, tiny_model


@pytest.fixture(scope="module")
def model():
    # V2: folded BNs, ChannelAffine layers, pads, max-pool shortcuts, softmax head.
    return tiny_model("resnet50v2", activation="softmax", classes=5)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.slow
def test_saved_model_parity(model, tmp_path, precision):
    report = export_for_inference(model, tmp_path / "saved", precision=precision)
    print(f"PARITY tf_saved_model {precision}: {report.max_error:.2e}")
    assert report.path.is_dir() and (report.path / "saved_model.pb").is_file()
    limit = 1e-5 if precision == "float32" else 2e-2
    assert report.max_error < limit
    # and against the original (unfused, float32) model
    import tensorflow as tf

    loaded = tf.saved_model.load(str(report.path))
    x = images()
    assert rel_error(loaded.serve(tf.constant(x)), model(x)) < (1e-4 if precision == "float32" else 5e-2)


# The exported files are run here with the deployment runtimes themselves
# (onnxruntime, LiteRT), on other inputs than the parity report's, and
# compared with the original Keras model (not the BatchNorm-folded one the
# report compares with): the report is our code, this is the user's view.


def run_onnx(path, x) -> np.ndarray:
    onnxruntime = require("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (source,) = session.get_inputs()
    assert source.type == "tensor(float)" and source.shape[1:] == list(x.shape[1:])
    (result,) = session.run(None, {source.name: x})
    return result


def run_litert(path, x) -> np.ndarray:
    interpreter = require("ai_edge_litert.interpreter").Interpreter(model_path=str(path))
    (source,) = interpreter.get_input_details()
    assert source["dtype"] == np.float32 and tuple(source["shape"][1:]) == x.shape[1:]
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    (result,) = interpreter.get_output_details()
    return interpreter.get_tensor(result["index"])


def keras_outputs(model, x) -> np.ndarray:
    return np.asarray(model(x, training=False))


def test_onnx_parity(model, tmp_path):
    require("tf2onnx")
    report = export_for_inference(model, tmp_path / "model", format="onnx")
    print(f"PARITY onnx float32: {report.max_error:.2e}")
    assert report.path == tmp_path / "model.onnx" and report.max_error < 1e-5
    x = images(3, seed=5)
    result = run_onnx(report.path, x)
    assert result.shape == (3, 5)
    assert rel_error(result, keras_outputs(model, x)) < 1e-5


@pytest.mark.slow
def test_onnx_float16_parity(model, tmp_path):
    require("tf2onnx")
    report = export_for_inference(model, tmp_path / "m.onnx", format="onnx", precision="float16")
    print(f"PARITY onnx float16: {report.max_error:.2e}")
    assert report.max_error < 5e-3
    x = images(3, seed=5)
    assert rel_error(run_onnx(report.path, x), keras_outputs(model, x)) < 5e-3


@pytest.mark.slow
def test_litert_parity(model, tmp_path):
    report = export_for_inference(model, tmp_path / "m", format="litert", check_inputs=images(3))
    print(f"PARITY litert float32: {report.max_error:.2e}")
    assert report.path == tmp_path / "m.tflite" and report.max_error < 1e-5
    x = images(2, seed=5)
    result = run_litert(report.path, x)
    assert result.shape == (2, 5)
    assert rel_error(result, keras_outputs(model, x)) < 1e-5


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(format="coreml"), "`format` must be one of .*Received: format='coreml'"),
        (dict(format="onnx", precision="bfloat16"), "Received: precision='bfloat16'"),
        (dict(format="litert", precision="float16"), "Export float16 with format='tf_saved_model' or format='onnx'"),
        (dict(precision="half"), "Received: precision='half'"),
    ],
)
def test_bad_arguments_fail_before_writing(model, tmp_path, kwargs, phrase):
    with pytest.raises(InvalidArgumentError, match=phrase):
        export_for_inference(model, tmp_path / "x", **kwargs)
    assert not any(tmp_path.iterdir())


def test_dynamic_input_size_needs_check_inputs(tmp_path):
    dynamic = resnet_keras.ResNet18(weights=None, include_top=False, input_shape=(None, None, 3))
    with pytest.raises(InvalidArgumentError, match="check_inputs.*Received: check_inputs=None"):
        export_for_inference(dynamic, tmp_path / "x")


EVERY_FORMAT = pytest.mark.parametrize(
    "format, module",
    [("tf_saved_model", None), ("onnx", "tf2onnx"), pytest.param("litert", "ai_edge_litert", marks=pytest.mark.slow)],
)


def change_on_export(monkeypatch, layer: str) -> None:
    """From now on keras' exporter writes `layer` with its kernel times 1.5."""
    import keras

    real_export = keras.Model.export

    def export_changed(self, filepath, *args, **kwargs):
        changed = self.get_layer(layer)
        changed.kernel.assign(changed.kernel * 1.5)
        return real_export(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "export", export_changed)


@EVERY_FORMAT
@pytest.mark.slow
def test_an_artifact_that_computes_something_else_is_a_parity_error(model, tmp_path, monkeypatch, format, module):
    """The file written, read back with its runtime: a classifier changed on its way out is caught."""
    if module:
        require(module)
    change_on_export(monkeypatch, "predictions")
    with pytest.raises(ExportParityError, match=f"exported {format} model must match the Keras model within 0.0001"):
        export_for_inference(model, tmp_path / "x", format=format)


@pytest.fixture(scope="module")
def stages():
    """Four outputs (a dict C2..C5, as feature_model gives) of very different scales."""
    return resnet_keras.feature_model(tiny_model("resnet50", include_top=False))


@EVERY_FORMAT
@pytest.mark.slow
def test_every_output_of_a_multi_output_model_is_checked(stages, tmp_path, monkeypatch, format, module):
    """Parity holds on each output; a change that reaches only the last one (C5) is caught."""
    if module:
        require(module)
    report = export_for_inference(stages, tmp_path / "m", format=format)
    print(f"PARITY {format} C2..C5: {report.max_error:.2e}")
    assert report.max_error < 1e-5
    change_on_export(monkeypatch, "conv5_block1_3_conv")  # feeds C5 only
    with pytest.raises(ExportParityError, match=f"exported {format} model must match"):
        export_for_inference(stages, tmp_path / "changed", format=format)


def test_format_records_agree_with_the_package():
    """Each format's precisions are optimize_for_inference's; its extra is declared."""
    import configparser
    from pathlib import Path

    from resnet_keras.inference.export import FORMATS
    from resnet_keras.inference.precision import KERAS

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).parents[1] / "setup.cfg")
    extras = set(setup["options.extras_require"])
    for name, record in FORMATS.items():
        assert record.name == name and set(record.precisions) <= set(KERAS)
        assert record.extra in extras
    assert len({f.cli_name for f in FORMATS.values()}) == len(FORMATS)


def test_records_load_without_keras():
    """The command line reads the format records (and the data format rule) keras-free."""
    import subprocess
    import sys

    code = (
        "import sys, resnet_keras.inference.export, resnet_keras.architecture.specs, resnet_keras._imagenet; "
        "assert 'keras' not in sys.modules, 'keras imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
