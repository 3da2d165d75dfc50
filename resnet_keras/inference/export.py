"""export_for_inference: optimize, export, reload with the target runtime, compare.

Keras 3 writes all three formats (`model.export`); this module adds the
BatchNorm folding and the check that the exported artifact computes what the
folded Keras model computes (every output, `precision.compare`, within
`precision.TOLERANCE`), with the runtime users deploy it with. Each format is
one `ExportFormat` record in `FORMATS` (its suffix, the modules it needs,
how it is written and read back); the precisions each loads are its row of
`precision.BY_FORMAT`. The command line reads the same records.

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

from . import onnx
from .precision import check_parity, compare, tolerance as tolerance_of
from .precision import BY_FORMAT, check_format
from ..errors import ExportParityError, InvalidArgumentError

if TYPE_CHECKING:
    import keras


def _keras_writer(format: str):
    """`write(fused, path, x) -> outputs on x`: run `x`, then keras' own exporter."""

    def write(fused, path: Path, x: np.ndarray) -> list[np.ndarray]:
        import keras

        expected = [np.asarray(o) for o in keras.tree.flatten(fused.predict_on_batch(x))]
        fused.export(str(path), format=format, verbose=False)
        return expected

    return write


def _run_saved_model(path: Path, x: np.ndarray, fused) -> list[np.ndarray]:
    import keras
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # keep a reference while calling
    return [np.asarray(o) for o in keras.tree.flatten(loaded.serve(tf.constant(x)))]


def _run_onnx(path: Path, x: np.ndarray, fused) -> list[np.ndarray]:
    return onnx.run(onnx.session(path), x)


def _run_litert(path: Path, x: np.ndarray, fused) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()  # resizes to x's batch
    (name,) = runner.get_input_details()
    outputs = runner(**{name: x})
    # The signature names a dict's outputs by key, others output_0, output_1, ...;
    # keras.tree.flatten takes dict keys sorted. A name missing is a parity error.
    names = sorted(fused.output) if isinstance(fused.output, dict) else [f"output_{i}" for i in range(len(outputs))]
    return [outputs[name] for name in names if name in outputs]


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format: what it writes, what it needs, how it is checked.

    Attributes:
        name: The `format=` of `export_for_inference` and of keras' `model.export`.
        cli_name: The command line's `--format` value.
        suffix: The file suffix; "" for a folder.
        modules: Python modules the export and its check import.
        extra: The pip extra that installs them: `resnet-keras[{extra}]`.
        load_hint: How a user loads the artifact; `PATH` stands for its path.
        write: `(fused, path, x) -> outputs`: writes the artifact, returns the
            folded Keras model's outputs on `x` (flattened).
        run: `(path, x, fused) -> outputs`: the artifact run by its runtime,
            one array per output in `keras.tree.flatten` order.
    """

    name: str
    cli_name: str
    suffix: str
    modules: tuple[str, ...]
    extra: str
    load_hint: str
    write: Callable[..., list]
    run: Callable[..., list]

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions its runtime loads (`precision.BY_FORMAT`)."""
        return BY_FORMAT[self.name]

    def missing_modules(self) -> list[str]:
        """The modules this format needs that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


FORMATS = MappingProxyType({
    f.name: f
    for f in (
        ExportFormat(
            name="tf_saved_model", cli_name="savedmodel", suffix="", modules=(), extra="export",
            load_hint="tf.saved_model.load(PATH).serve(x)",
            write=_keras_writer("tf_saved_model"), run=_run_saved_model,
        ),
        ExportFormat(
            name="onnx", cli_name="onnx", suffix=".onnx", modules=("tf2onnx", "onnxruntime"),
            extra="export", load_hint="onnxruntime.InferenceSession(PATH).run(None, {input_name: x})",
            write=onnx.write, run=_run_onnx,
        ),
        ExportFormat(
            name="litert", cli_name="tflite", suffix=".tflite", modules=("ai_edge_litert",),
            extra="export", load_hint="ai_edge_litert.interpreter.Interpreter(model_path=PATH)",
            write=_keras_writer("litert"), run=_run_litert,
        ),
    )
})


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What `export_for_inference` wrote and how closely it matches Keras.

    Attributes:
        path: The exported artifact (a folder for SavedModel, else a file).
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        precision: Compute precision of the exported model.
        max_error: Largest absolute difference from the optimized Keras model
            on the check inputs, relative to the largest Keras value (per
            output; the largest over outputs).
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
        precision: As in `optimize_for_inference`; `precision.BY_FORMAT`
            lists the precisions each format's runtime loads.
        check_inputs: A batch of model inputs for the parity check; default
            two random images of the model's input shape.
        tolerance: Largest allowed `max_error`; default `precision.TOLERANCE`:
            1e-4 for float32, 2e-2 for bfloat16, 5e-3 for float16.

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
    from .optimize import optimize_for_inference

    precision = check_format(format, precision)
    target = FORMATS[format]
    x = _check_inputs(model, check_inputs)
    path = Path(path)
    if target.suffix and path.suffix.lower() != target.suffix:  # m.ONNX stays m.ONNX
        path = path.with_name(path.name + target.suffix)

    fused = optimize_for_inference(model, precision)
    expected = target.write(fused, path, x)
    error = compare(expected, target.run(path, x, fused)).max_relative_error
    limit = tolerance_of(precision, precision) if tolerance is None else tolerance
    check_parity(error, limit, ExportParityError, f"The exported {format} model",
          f"It is left at {path} to inspect; please report the model.")
    return ExportReport(path=path, format=format, precision=precision, max_error=error, model=fused)
