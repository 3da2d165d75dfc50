"""export_for_inference: optimize, export, reload with the target runtime, compare.

Keras 3 writes all three formats (`model.export`); this module adds the
BatchNorm folding and the check that the exported artifact computes what the
Keras model computes, with the runtime users deploy it with:

| format | runtime used for the check | precisions that load there |
|---|---|---|
| `tf_saved_model` | `tf.saved_model.load(...).serve` | float32, bfloat16, float16 |
| `onnx` (needs `tf2onnx`, `onnxruntime`) | onnxruntime, CPU | float32, float16 |
| `litert` (needs `ai-edge-litert`) | LiteRT interpreter | float32 |

bfloat16 ONNX is refused because tf2onnx 1.17 cannot write bfloat16 constants
and onnxruntime has no bfloat16 Conv on CPU; reduced-precision LiteRT models
need TensorFlow "select ops" (Flex) that the plain interpreter lacks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from .inference import PRECISIONS, _check_precision, optimize_for_inference
from ..errors import InvalidArgumentError, ResNetKerasError

FORMATS = ("tf_saved_model", "onnx", "litert")
# Python modules each format needs to export and to check the result.
REQUIRED_MODULES = {
    "tf_saved_model": (),
    "onnx": ("tf2onnx", "onnxruntime"),
    "litert": ("ai_edge_litert",),
}


def missing_modules(format: str) -> list[str]:
    """The modules `format` needs that are not installed."""
    import importlib.util

    return [m for m in REQUIRED_MODULES[format] if importlib.util.find_spec(m) is None]
_LOADABLE = {
    "tf_saved_model": PRECISIONS,
    "onnx": ("float32", "float16"),
    "litert": ("float32",),
}
# Exported vs Keras, same precision: the arithmetic is the same up to kernel
# choice and summation order.
_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}


class ExportParityError(ResNetKerasError, RuntimeError):
    """The exported model's outputs differ from the Keras model's."""


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What `export_for_inference` wrote and how closely it matches Keras.

    Attributes:
        path: The exported artifact (a folder for SavedModel, else a file).
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        precision: Compute precision of the exported model.
        max_error: Largest absolute difference from the optimized Keras model
            on the check inputs, relative to the largest Keras output.
        model: The optimized Keras model that was exported.
    """

    path: Path
    format: str
    precision: str
    max_error: float
    model: keras.Model


def _run_saved_model(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # keep a reference while calling
    return np.asarray(loaded.serve(tf.constant(x)))


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _run_litert(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (source,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


_RUNNERS = {"tf_saved_model": _run_saved_model, "onnx": _run_onnx, "litert": _run_litert}
_SUFFIX = {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}


def _check_inputs(model: keras.Model, check_inputs) -> np.ndarray:
    if check_inputs is not None:
        return np.asarray(check_inputs, dtype="float32")
    if len(model.inputs) != 1 or None in tuple(model.inputs[0].shape)[1:]:
        raise InvalidArgumentError(
            "`check_inputs` must be given for a model with several inputs or a "
            f"dynamic input size. Received: check_inputs=None, input shapes "
            f"{[tuple(t.shape) for t in model.inputs]}"
        )
    shape = (2,) + tuple(model.inputs[0].shape)[1:]
    return np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype("float32")


def export_for_inference(
    model: keras.Model,
    path: str | Path,
    *,
    format: str = "tf_saved_model",
    precision: str = "float32",
    check_inputs=None,
    tolerance: float | None = None,
) -> ExportReport:
    """Fold BatchNorm, export, reload the artifact and check its outputs.

    Args:
        model: Any model `optimize_for_inference` accepts.
        path: Where to write: a folder for `"tf_saved_model"`; a file for
            `"onnx"` (`.onnx`) and `"litert"` (`.tflite`), the suffix is added
            when missing.
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        precision: As in `optimize_for_inference`; see the module table for
            the precisions each format's runtime loads.
        check_inputs: A batch of model inputs for the parity check; default
            two random images of the model's input shape.
        tolerance: Largest allowed `max_error`; default 1e-4 for float32,
            2e-2 for bfloat16, 5e-3 for float16.

    Returns:
        An `ExportReport`.

    Raises:
        InvalidArgumentError: Unknown format or precision, or a combination
            the format's runtime cannot load.
        ExportParityError: The artifact's outputs differ by more than
            `tolerance`.

    Example:
        >>> report = export_for_inference(resnet_keras.ResNet20(weights=None), "r20")
        >>> report.max_error < 1e-4
        True
    """
    if format not in FORMATS:
        raise InvalidArgumentError(
            f"`format` must be one of {FORMATS}. Received: format={format!r}"
        )
    precision = _check_precision(precision)
    if precision not in _LOADABLE[format]:
        raise InvalidArgumentError(
            f"`precision` must be one of {_LOADABLE[format]} for format={format!r} "
            f"(its runtime cannot load the others). Received: precision={precision!r}. "
            "Export a SavedModel for bfloat16, or float32 for this format."
        )
    x = _check_inputs(model, check_inputs)
    path = Path(path)
    if _SUFFIX[format] and path.suffix.lower() != _SUFFIX[format]:  # m.ONNX stays m.ONNX
        path = path.with_name(path.name + _SUFFIX[format])

    fused = optimize_for_inference(model, precision)
    # Called before exporting: the ONNX exporter needs a model that has run.
    expected = np.asarray(fused.predict_on_batch(x), np.float64)
    fused.export(str(path), format=format, verbose=False)
    actual = np.asarray(_RUNNERS[format](path, x), np.float64)
    error = float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))
    limit = _TOLERANCE[precision] if tolerance is None else tolerance
    if not error <= limit:
        raise ExportParityError(
            f"The exported {format} model must match the Keras model within {limit:g} "
            f"(largest difference relative to the largest output). Received: "
            f"max_error={error:.3g} for {path}"
        )
    return ExportReport(path=path, format=format, precision=precision, max_error=error, model=fused)
