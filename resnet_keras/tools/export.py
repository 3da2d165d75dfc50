"""export_for_inference: optimize, export, reload with the target runtime, compare.

Keras 3 writes all three formats (`model.export`); this module adds the
BatchNorm folding and the check that the exported artifact computes what the
Keras model computes, with the runtime users deploy it with. Each format is
one `ExportFormat` record in `FORMATS` (its suffix, the modules it needs, the
precisions its runtime loads, the runtime call of the check); the command
line reads the same records.

bfloat16 ONNX is refused because tf2onnx 1.17 cannot write bfloat16 constants
and onnxruntime has no bfloat16 Conv on CPU; reduced-precision LiteRT models
need TensorFlow "select ops" (Flex) that the plain interpreter lacks.

Keras is imported on the first export, so that the command line reads the
records without loading it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import InvalidArgumentError, ResNetKerasError

if TYPE_CHECKING:
    import keras


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


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format: what it writes, what it needs, how it is checked.

    Attributes:
        name: The `format=` of `export_for_inference` and of keras' `model.export`.
        cli_name: The command line's `--format` value.
        suffix: The file suffix; "" for a folder.
        modules: Python modules the export and its check import.
        extra: The pip extra that installs them: `resnet-keras[{extra}]`.
        precisions: The precisions its runtime loads.
        load_hint: How a user loads the artifact; `PATH` stands for its path.
        run: The runtime call of the parity check, `(path, inputs) -> outputs`.
    """

    name: str
    cli_name: str
    suffix: str
    modules: tuple[str, ...]
    extra: str
    precisions: tuple[str, ...]
    load_hint: str
    run: Callable[[Path, np.ndarray], np.ndarray]

    def missing_modules(self) -> list[str]:
        """The modules this format needs that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


FORMATS = MappingProxyType({
    f.name: f
    for f in (
        ExportFormat(
            name="tf_saved_model", cli_name="savedmodel", suffix="", modules=(),
            extra="export", precisions=("float32", "bfloat16", "float16"),
            load_hint="tf.saved_model.load(PATH).serve(x)", run=_run_saved_model,
        ),
        ExportFormat(
            name="onnx", cli_name="onnx", suffix=".onnx", modules=("tf2onnx", "onnxruntime"),
            extra="export", precisions=("float32", "float16"),
            load_hint="onnxruntime.InferenceSession(PATH).run(None, {input_name: x})",
            run=_run_onnx,
        ),
        ExportFormat(
            name="litert", cli_name="tflite", suffix=".tflite", modules=("ai_edge_litert",),
            extra="export", precisions=("float32",),
            load_hint="ai_edge_litert.interpreter.Interpreter(model_path=PATH)",
            run=_run_litert,
        ),
    )
})
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
    from .inference import _check_precision, optimize_for_inference

    if format not in FORMATS:
        raise InvalidArgumentError(
            f"`format` must be one of {tuple(FORMATS)}. Received: format={format!r}"
        )
    target = FORMATS[format]
    precision = _check_precision(precision)
    if precision not in target.precisions:
        raise InvalidArgumentError(
            f"`precision` must be one of {target.precisions} for format={format!r} "
            f"(its runtime cannot load the others). Received: precision={precision!r}. "
            "Export a SavedModel for bfloat16, or float32 for this format."
        )
    x = _check_inputs(model, check_inputs)
    path = Path(path)
    if target.suffix and path.suffix.lower() != target.suffix:  # m.ONNX stays m.ONNX
        path = path.with_name(path.name + target.suffix)

    fused = optimize_for_inference(model, precision)
    # Called before exporting: the ONNX exporter needs a model that has run.
    expected = np.asarray(fused.predict_on_batch(x), np.float64)
    fused.export(str(path), format=format, verbose=False)
    actual = np.asarray(target.run(path, x), np.float64)
    error = float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))
    limit = _TOLERANCE[precision] if tolerance is None else tolerance
    if not error <= limit:
        raise ExportParityError(
            f"The exported {format} model must match the Keras model within {limit:g} "
            f"(largest difference relative to the largest output). Received: "
            f"max_error={error:.3g} for {path}"
        )
    return ExportReport(path=path, format=format, precision=precision, max_error=error, model=fused)
