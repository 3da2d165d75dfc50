"""The one ONNX path: a folded Keras model written as ONNX, and run with onnxruntime.

`export_for_inference(format="onnx")` writes with `write` and reads the file
back with `session` + `run` for its parity check; the onnxruntime engine
writes with `write`, quantizes for int8, and compiles with `session`.

Several outputs come back as several arrays, in `keras.tree.flatten` order
(Keras hands tf2onnx the flattened outputs: dict keys sorted, lists in
order), the order `precision.compare` and `Predictor.predict` expect.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write(fused, path: Path, x: np.ndarray) -> list[np.ndarray]:
    """Write `fused` (a folded model) as an ONNX file; returns its outputs on `x`, flattened.

    `x` runs through the Keras model first: the ONNX exporter traces a model
    that has been called, and its outputs are what the file must compute.
    """
    import keras

    expected = [np.asarray(o) for o in keras.tree.flatten(fused.predict_on_batch(x))]
    fused.export(str(path), format="onnx", verbose=False)
    return expected


def session(model: Path | bytes):
    """An onnxruntime session on the CPU: every graph optimization, one thread per core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(session, x: np.ndarray) -> list[np.ndarray]:
    """Every output of the session's model on `x`, as float32 arrays."""
    name = session.get_inputs()[0].name
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, {name: x})]
