"""onnxruntime engine: the folded graph written as ONNX by `inference/onnx.py`
(the path `export_for_inference` takes too), run on the CPU provider.

int8 is onnxruntime's static post-training quantization in QDQ form:
per-channel int8 weights, uint8 activations (the VNNI instruction multiplies
uint8 by int8), MinMax ranges over the calibration set, the classifier (the
last MatMul or Gemm) left in float32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import onnx, optimize
from ..predictor import Engine


def _export(model, folder: Path) -> Path:
    fused = optimize.optimize_for_inference(model, "float32")
    sample = np.zeros((1,) + tuple(d or 32 for d in tuple(model.inputs[0].shape)[1:]), np.float32)
    path = folder / "model.onnx"
    onnx.write(fused, path, sample)
    return path


def _quantize(path: Path, calibration: np.ndarray) -> Path:
    import onnx as onnx_package  # the ONNX library, not this package's ..onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = path.with_name("model.prepared.onnx")
    quant_pre_process(str(path), str(prepared))  # shapes and fusions the quantizer wants
    path = prepared
    graph = onnx_package.load(str(path)).graph
    name = graph.input[0].name
    classifier = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")][-1:]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    out = path.with_name("model.int8.onnx")
    q.quantize_static(
        str(path), str(out), Reader(),
        quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax, nodes_to_exclude=classifier,
    )
    return out


def build(model, precision: str, calibration) -> Engine:
    with tempfile.TemporaryDirectory(prefix="resnet_keras_onnx_") as tmp:
        path = _export(model, Path(tmp))
        if precision == "int8":
            path = _quantize(path, calibration)
        content = path.read_bytes()
    session = onnx.session(content)
    threads = session.get_session_options().intra_op_num_threads
    return Engine("onnxruntime", precision, lambda x: onnx.run(session, x), {"threads": threads})
