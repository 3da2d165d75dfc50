"""Predictor: one Keras model, compiled for the fastest CPU runtime installed.

The arguments are checked first (`precision.choose`: precision and runtime
from `precision.BY_RUNTIME`; the calibration set here), then the engine is
built (`precision.RUNTIMES`: the TensorFlow engine here, the others in
`engines/`) and its outputs compared with the Keras model's
(`precision.compare`; float32 gated by `precision.TOLERANCE`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from .precision import CALIBRATED, ParityReport, check_calibration, check_parity, choose, compare, tolerance
from ..errors import InvalidArgumentError, PredictorParityError

# Images the parity check runs through both the Keras model and the engine.
PARITY_SAMPLES = 8
# What the Predictor is compared with: the Keras model as given.
REFERENCE_PRECISION = "float32"


def _model_input(model) -> tuple:
    import keras

    from .optimize import functional_model

    if keras.backend.backend() != "tensorflow":  # every engine starts from a traced TF graph
        raise InvalidArgumentError(
            "Predictor needs the TensorFlow backend: every runtime reads the model as a traced "
            f"TensorFlow graph. Received: KERAS_BACKEND={keras.backend.backend()!r}. Run with "
            "KERAS_BACKEND=tensorflow, or call model.predict on this backend."
        )
    model = functional_model(model)
    if len(model.inputs) != 1:
        raise InvalidArgumentError(
            "`model` must have one input (every resnet_keras model has). "
            f"Received: a model with {len(model.inputs)} inputs"
        )
    return model, tuple(model.inputs[0].shape)[1:]


def _check_batch(x: Any, shape: tuple, what: str) -> np.ndarray:
    """`x` as float32 of shape (n,) + shape; a typed error otherwise."""
    wanted = "(n, " + ", ".join("any" if d is None else str(d) for d in shape) + ")"
    try:
        array = np.ascontiguousarray(x, dtype=np.float32)  # engines read it in place
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(
            f"`{what}` must be a numeric array of images of shape {wanted}. "
            f"Received: {type(x).__name__} that NumPy cannot read as float32 ({error})"
        ) from None
    fits = array.ndim == len(shape) + 1 and all(
        want is None or want == got for want, got in zip(shape, array.shape[1:])
    )
    if not fits:
        raise InvalidArgumentError(
            f"`{what}` must have shape {wanted}: a batch of preprocessed images as the model "
            f"takes them. Received: shape {array.shape}"
        )
    return array


def _check_calibration(calibration: Any, precision: str, shape: tuple) -> np.ndarray | None:
    if calibration is None or precision not in CALIBRATED:
        check_calibration(precision, calibration is not None)
        return None
    array = _check_batch(calibration, shape, "calibration")
    check_calibration(precision, True, len(array))
    if not np.isfinite(array).all():
        raise InvalidArgumentError(
            "`calibration` must be finite: NaN or inf would set the int8 ranges. Received: "
            f"{int(np.size(array) - np.isfinite(array).sum())} non-finite values"
        )
    return array


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidArgumentError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


class Predictor:
    """A Keras model compiled for fast CPU inference, called like `model.predict`.

    The model is folded (BatchNorm into convolutions), handed to a runtime
    and compiled for the CPU; its outputs are compared with the Keras
    model's right away (`precision.compare`). `predict` takes the same preprocessed
    batch `model.predict` takes and returns the same NumPy arrays.

    `predict` is safe to call from several threads at once, on every
    runtime: each call gets its own results. OpenVINO lends each call infer
    requests of its own and tunes a new batch shape once; onnxruntime
    sessions and TensorFlow functions take concurrent calls by design.

    Args:
        model: A functional Keras model with one input: any resnet_keras model,
            with or without top, any pooling.
        precision: "float32" (same results as Keras within 1e-5 relative),
            "bfloat16" (CPUs with AVX-512 BF16 or AMX; about 3 significant
            digits) or "int8" (post-training static quantization; needs
            `calibration`).
        runtime: "auto" (the fastest installed for `precision`, see
            `precision.AUTO_ORDER`), "openvino", "onnxruntime" or "tensorflow".
        calibration: For int8: a few hundred preprocessed images like the ones
            you will predict on, shape (n, *input_shape), at least 32.

    Attributes:
        runtime: The runtime chosen.
        precision: The compute precision.
        parity: A `ParityReport` against the Keras model in float32.
        build_seconds: Time spent converting, quantizing and compiling.

    Raises:
        InvalidArgumentError: Unknown precision or runtime, a runtime that
            lacks the precision, or a missing, small or malformed calibration set.
        MissingDependencyError: The runtime asked for (or every runtime
            "auto" may pick) is not installed; the message names the extra.
        PredictorParityError: A float32 engine disagrees with Keras.

    Example:
        >>> model = resnet_keras.ResNet50(weights="imagenet")
        >>> fast = resnet_keras.Predictor(model, precision="bfloat16")
        >>> probabilities = fast.predict(images, batch_size=32)
    """

    def __init__(self, model, precision: str = "float32", runtime: str = "auto", calibration=None):
        chosen = choose(runtime, precision)
        model, self.input_shape = _model_input(model)
        calibration = _check_calibration(calibration, precision, self.input_shape)
        started = time.perf_counter()
        self._engine = chosen.build(model, precision, calibration)
        self.build_seconds = time.perf_counter() - started
        self.runtime = chosen.name
        self.precision = precision
        self._structure = model.output  # a tensor, or a list/dict of them: predict returns the same
        self.parity = self._measure_parity(model, calibration)

    def _measure_parity(self, model, calibration) -> ParityReport:
        if calibration is not None:
            probe, source = calibration[:PARITY_SAMPLES], "calibration"
        else:
            shape = (PARITY_SAMPLES,) + tuple(d or 64 for d in self.input_shape)
            probe, source = np.random.default_rng(0).standard_normal(shape, np.float32), "random"
        import keras

        reference = keras.tree.flatten(model.predict_on_batch(probe))
        measured = compare(reference, self._engine.run(probe))
        check_parity(measured.max_relative_error, tolerance(self.precision, REFERENCE_PRECISION),
              PredictorParityError, f"runtime={self.runtime!r} in {self.precision}",
              "Use runtime='tensorflow', and report the model.")
        return ParityReport(len(probe), source, measured.max_relative_error, measured.min_cosine,
                            measured.top1_agreement)

    def predict(self, x, batch_size: int = 32):
        """Outputs for a batch of preprocessed images, like `model.predict(x)`.

        Args:
            x: Array of shape (n, *input_shape), preprocessed as the model
               expects (e.g. `resnet_keras.resnet.preprocess_input`).
            batch_size: Images per engine call.

        Returns:
            A float32 NumPy array; for a model with several outputs, the same
            list or dict of them `model.predict` returns.

        Safe to call from several threads at once (see the class docstring).
        """
        batch_size = _check_batch_size(batch_size)
        x = _check_batch(x, self.input_shape, "x")
        if len(x) == 0:
            raise InvalidArgumentError(
                "`x` must hold at least one image. Received: an empty batch of shape "
                f"{x.shape}"
            )
        chunks = [self._engine.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        import keras

        outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        return keras.tree.pack_sequence_as(self._structure, outputs)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self._engine.settings.items())
        return (
            f"Predictor(runtime={self.runtime!r}, precision={self.precision!r}, {settings}; "
            f"parity: max relative error {self.parity.max_relative_error:.2g}, "
            f"min cosine {self.parity.min_cosine:.6f})"
        )


# --------------------------------------------------------------------------
# The engines: what every runtime builds, and TensorFlow's own.


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

    from . import optimize

    fused = optimize.optimize_for_inference(model, "float32")
    call = tf.function(lambda x: fused(x, training=False), input_signature=[input_spec(model)])
    return fused, call.get_concrete_function()


def tensorflow_engine(model, precision: str, calibration) -> Engine:
    """The TensorFlow engine: `optimize_for_inference`, then one traced function."""
    import tensorflow as tf

    from . import optimize

    fused = optimize.optimize_for_inference(model, precision)
    call = tf.function(lambda x: fused(x, training=False), input_signature=[input_spec(model)])

    def run(x: np.ndarray) -> list[np.ndarray]:
        outputs = call(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    return Engine("tensorflow", precision, run, {"graph": "BatchNorm folded, tf.function"})
