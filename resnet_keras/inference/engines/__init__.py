"""The Predictor's engines: one module per runtime, each with `build(model, precision, calibration)`.

- `openvino.py`: the folded graph converted in memory, compiled for the CPU,
  batches tuned per shape, an infer-request pool per compiled model; int8 by NNCF.
- `onnxruntime.py`: the folded graph as ONNX (`inference/onnx.py`), one
  session; int8 by onnxruntime's static quantizer.
- `tensorflow.py`: the folded model as one traced `tf.function`.

This module holds what they share: the `Engine` record and the traced graph.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Engine:
    """A compiled model: `run(batch) -> [outputs]`, float32 NumPy in and out.

    Attributes:
        runtime: The runtime's name.
        precision: The compute precision.
        run: Runs one batch; returns one array per model output.
        settings: What was chosen (streams, threads, graph rewrites), for repr and reports.
        keep: Objects the compiled model reads from and must outlive it.
    """

    runtime: str
    precision: str
    run: Callable[[np.ndarray], list]
    settings: dict
    keep: object = None


def input_spec(model):
    """The model's one input as a `tf.TensorSpec`, batch left open."""
    import tensorflow as tf

    return tf.TensorSpec((None,) + tuple(model.inputs[0].shape)[1:], tf.float32)


def float32_function(model):
    """The model with BatchNorm folded, as a traced TensorFlow function.

    What the converters read: folding first spares them the BatchNorm ops and
    gives every runtime the same graph.
    """
    import tensorflow as tf

    from .. import optimize

    fused = optimize.optimize_for_inference(model, "float32")
    call = tf.function(lambda x: fused(x, training=False), input_signature=[input_spec(model)])
    return fused, call.get_concrete_function()
