"""onnxruntime engine: the folded graph exported to ONNX, run on the CPU provider.

int8 is onnxruntime's static post-training quantization in QDQ form:
per-channel int8 weights, uint8 activations (the VNNI instruction multiplies
uint8 by int8), MinMax ranges over the calibration set, the classifier (the
last MatMul or Gemm) left in float32.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .graph import Engine


def _export(model, folder: Path) -> Path:
    from ..tools.inference import optimize_for_inference

    fused = optimize_for_inference(model, "float32")
    shape = (1,) + tuple(d or 32 for d in tuple(model.inputs[0].shape)[1:])
    fused.predict_on_batch(np.zeros(shape, np.float32))  # the ONNX exporter needs a model that has run
    path = folder / "model.onnx"
    fused.export(str(path), format="onnx", verbose=False)
    return path


def _quantize(path: Path, calibration: np.ndarray) -> Path:
    import onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = path.with_name("model.prepared.onnx")
    quant_pre_process(str(path), str(prepared))  # shapes and fusions the quantizer wants
    path = prepared
    graph = onnx.load(str(path)).graph
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
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="resnet_keras_onnx_") as tmp:
        path = _export(model, Path(tmp))
        if precision == "int8":
            path = _quantize(path, calibration)
        content = path.read_bytes()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    session = onnxruntime.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in session.run(None, {name: x})]

    return Engine("onnxruntime", precision, run, {"threads": options.intra_op_num_threads})
