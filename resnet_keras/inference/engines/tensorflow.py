"""TensorFlow engine: `optimize_for_inference`, then one traced function."""

from __future__ import annotations

import numpy as np

from . import Engine, input_spec


def build(model, precision: str, calibration) -> Engine:
    import tensorflow as tf

    from .. import optimize

    fused = optimize.optimize_for_inference(model, precision)
    call = tf.function(lambda x: fused(x, training=False), input_signature=[input_spec(model)])

    def run(x: np.ndarray) -> list[np.ndarray]:
        outputs = call(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    return Engine("tensorflow", precision, run, {"graph": "BatchNorm folded, tf.function"})
