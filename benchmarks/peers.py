"""The peers: ResNet50 as other runtimes run it, with their default settings.

Every peer runs the same weights. keras.applications runs in TensorFlow
(float32, and under the `mixed_bfloat16` policy); onnxruntime and OpenVINO
read the ONNX file a user gets from `resnet_keras.export_for_inference`,
compiled as their documentation shows, with only the precision set:
OpenVINO's CPU plugin computes in bfloat16 unless told float32, and its int8
is NNCF's `quantize` with default settings on the calibration images.
Each peer is a function `x -> NumPy outputs`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from measure import compiled


def keras_call(model):
    call = compiled(model)  # traced the way the builders' benchmark traces them
    return lambda x: call(x).numpy()


def keras_bfloat16(weights: list, **head):
    """keras.applications.ResNet50 under the mixed_bfloat16 policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras.applications.ResNet50(weights=None, **head)
    finally:
        keras.config.set_dtype_policy(previous)
    model.set_weights(weights)
    return keras_call(model)


def onnxruntime_float32(onnx_path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def openvino(onnx_path: Path, precision: str, calibration: np.ndarray | None = None):
    """OpenVINO's CPU plugin on the ONNX file: "f32", "bf16", or NNCF "int8"."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    config = {}
    if precision == "int8":
        import nncf

        model = nncf.quantize(model, nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]))
    else:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0]
