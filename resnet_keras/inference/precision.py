"""Precisions and runtimes: the one definition, what each runtime and export format runs, and how close each must stay.

Plain data (NumPy only inside `compare`, no Keras), so that the command line
builds its `--precision` and `--runtime` choices from here at `--help`
speed, and checks a combination before any download or model build. Every
"which precisions" question reads these tables: the Predictor,
`export_for_inference`, `optimize_for_inference`, the CLI's choices and the
extraction's. Three parts: the precisions (below), the runtimes
(`RUNTIMES`, `choose`), and parity (`compare`, `TOLERANCE`, `check_parity`).

- `KERAS`: what `optimize_for_inference` computes in (a Keras dtype policy).
- `CALIBRATED`: precisions that need a calibration set (int8 measures its
  activation ranges on images; nothing in the model holds them).
- `BY_RUNTIME`: what each Predictor runtime compiles. `PREDICTOR` is their union.
- `BY_FORMAT`: what each export format's runtime loads. `EXPORT` is their union.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from types import MappingProxyType
from typing import TYPE_CHECKING, Sequence

from ..errors import InvalidArgumentError, MissingDependencyError, ParityError

if TYPE_CHECKING:
    import numpy as np


# Every precision the package knows, in the order choices are listed.
ALL = ("float32", "bfloat16", "float16", "int8")

KERAS = ("float32", "bfloat16", "float16")
CALIBRATED = ("int8",)
# A smaller calibration set gives activation ranges that miss the tails of real inputs.
MIN_CALIBRATION = 32
# Calibration images read from files (the command line, extract_features): enough for
# stable ranges, in bounded memory.
CALIBRATION_LIMIT = 300

# float16 in no runtime: CPUs compute it slower than float32 (export it for GPUs).
BY_RUNTIME = MappingProxyType({
    "openvino": ("float32", "bfloat16", "int8"),
    "onnxruntime": ("float32", "int8"),  # no bfloat16 convolution on CPUs
    "tensorflow": ("float32", "bfloat16"),  # int8 is a quantizer's job: NNCF's, onnxruntime's
})

BY_FORMAT = MappingProxyType({
    "tf_saved_model": ("float32", "bfloat16", "float16"),
    # tf2onnx 1.17 cannot write bfloat16 constants, and onnxruntime has no
    # bfloat16 Conv on CPU.
    "onnx": ("float32", "float16"),
    # Reduced-precision LiteRT models need TensorFlow "select ops" (Flex),
    # which the plain interpreter lacks.
    "litert": ("float32",),
})


def _union(tables) -> tuple[str, ...]:
    return tuple(p for p in ALL if any(p in precisions for precisions in tables))


PREDICTOR = _union(BY_RUNTIME.values())
EXPORT = _union(BY_FORMAT.values())


def check(precision, choices: tuple[str, ...] = KERAS) -> str:
    """`precision` if it is one of `choices`; a typed error otherwise."""
    if not isinstance(precision, str) or precision not in choices:
        raise InvalidArgumentError(
            f"`precision` must be one of {choices}. Received: precision={precision!r}"
        )
    return precision


def formats_for(precision: str) -> tuple[str, ...]:
    """The export formats whose runtime loads `precision`."""
    return tuple(name for name, precisions in BY_FORMAT.items() if precision in precisions)


def check_format(format, precision) -> str:
    """`precision` for an export to `format`, from `BY_FORMAT`; a typed error otherwise."""
    if not isinstance(format, str) or format not in BY_FORMAT:
        raise InvalidArgumentError(
            f"`format` must be one of {tuple(BY_FORMAT)}. Received: format={format!r}"
        )
    precision = check(precision, EXPORT)
    if precision not in BY_FORMAT[format]:
        able = formats_for(precision)
        raise InvalidArgumentError(
            f"`precision` must be one of {BY_FORMAT[format]} for format={format!r} (its runtime "
            f"cannot load the others). Received: precision={precision!r}. Export {precision} with "
            f"{' or '.join(f'format={name!r}' for name in able)}, or {BY_FORMAT[format][0]} with "
            f"format={format!r}."
        )
    return precision


def check_calibration(precision: str, given: bool, count: int | None = None) -> None:
    """A calibration set goes with the precisions that need one (`CALIBRATED`), of at least
    `MIN_CALIBRATION` images (`count`, when known)."""
    if precision not in CALIBRATED:
        if given:
            raise InvalidArgumentError(
                "`calibration` is used by precision='int8' only. Received: a calibration set "
                f"with precision={precision!r}. Drop it, or ask for precision='int8'."
            )
        return
    if not given:
        raise InvalidArgumentError(
            f"precision={precision!r} needs `calibration`: a few hundred images like the ones you will "
            f"run on (at least {MIN_CALIBRATION}), to measure activation ranges. Received: calibration=None"
        )
    if count is not None and count < MIN_CALIBRATION:
        raise InvalidArgumentError(
            f"`calibration` must hold at least {MIN_CALIBRATION} images (a few hundred is better). "
            f"Received: {count}"
        )


# --------------------------------------------------------------------------
# The runtimes a Predictor can run on, and which one `runtime="auto"` picks.
#
# Each runtime is one `Runtime` record: the Python modules it needs and the
# pip extra that installs them, and the function that builds its engine; the
# precisions it runs are its row of `BY_RUNTIME`. `FASTEST_FIRST`
# orders the runtimes as measured by `benchmarks/bench.py` on an AVX-512 CPU
# (docs/performance.md); "auto" takes the first one installed that runs the
# precision (`AUTO_ORDER`).

@dataclasses.dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes:
        name: The `runtime=` value.
        modules: Python modules it imports.
        extra: The pip extra that installs them: `resnet-keras[{extra}]`.
    """

    name: str
    modules: tuple[str, ...]
    extra: str
    engine: str  # "module:function" of this package that builds its engine

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions it runs (`precision.BY_RUNTIME`)."""
        return BY_RUNTIME[self.name]

    def missing_modules(self) -> list[str]:
        """The modules this runtime needs that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def build(self, model, precision: str, calibration):
        missing = self.missing_modules()
        if missing:
            raise MissingDependencyError(
                f"runtime={self.name!r} needs the packages {missing}, which are not installed. "
                f'Install them with: pip install "resnet-keras[{self.extra}]"'
            )
        module, function = self.engine.split(":")
        return getattr(importlib.import_module(module, __package__), function)(model, precision, calibration)


RUNTIMES = MappingProxyType({
    r.name: r
    for r in (
        Runtime("openvino", ("openvino", "nncf"), "openvino", ".engines.openvino:build"),
        Runtime("onnxruntime", ("onnxruntime", "tf2onnx"), "onnxruntime", ".engines.onnxruntime:build"),
        Runtime("tensorflow", ("tensorflow",), "tensorflow", ".predictor:tensorflow_engine"),
    )
})

# Fastest first (benchmarks/bench.py, ResNet50 batch 16; docs/performance.md).
FASTEST_FIRST = ("openvino", "onnxruntime", "tensorflow")
# Per precision, the runtimes that run it, fastest first.
AUTO_ORDER = MappingProxyType({
    p: tuple(name for name in FASTEST_FIRST if p in BY_RUNTIME[name])
    for p in PREDICTOR
})


def choose(runtime, precision: str) -> Runtime:
    """The runtime record for `runtime=` and `precision=`, "auto" resolved.

    Checks the precision too: every Predictor argument error is raised here
    or in the calibration check, before any conversion.
    """
    precision = check(precision, PREDICTOR)
    if runtime == "auto":
        order = [RUNTIMES[name] for name in AUTO_ORDER[precision]]
        for candidate in order:
            if not candidate.missing_modules():
                return candidate
        extras = " or ".join(f'"resnet-keras[{r.extra}]"' for r in order)
        raise MissingDependencyError(
            f"precision={precision!r} needs one of the runtimes {[r.name for r in order]}, and "
            f"none is installed. Install one with: pip install {extras}"
        )
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise InvalidArgumentError(
            f"`runtime` must be 'auto' or one of {tuple(RUNTIMES)}. Received: runtime={runtime!r}"
        )
    chosen = RUNTIMES[runtime]
    if precision not in chosen.precisions:
        able = list(AUTO_ORDER[precision])
        raise InvalidArgumentError(
            f"runtime={runtime!r} runs the precisions {chosen.precisions}. Received: "
            f"precision={precision!r}. Use runtime='auto' or one of {able} for {precision}."
        )
    return chosen


# --------------------------------------------------------------------------
# Parity: how closely a compiled or exported model computes what Keras computes.
#
# One measure (`compare`), one tolerance table (`TOLERANCE`) and one gate
# (`check`), used by `export_for_inference` (the artifact against the folded
# Keras model in the same precision) and by the Predictor (its engine against
# the Keras model in float32). Every output of a model is compared, in
# `keras.tree.flatten` order, each against its own largest value: a
# multi-output model (feature maps C2..C5 of very different scales) is held
# to the same rule as a classifier.

# Largest allowed `max_relative_error` against a reference that computes in
# the same precision: the arithmetic is the same up to kernel choice and
# summation order. One entry per precision a Keras model computes in
# (`precision.KERAS`).
TOLERANCE = MappingProxyType({"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3})


def tolerance(precision: str, reference: str) -> float | None:
    """The largest error allowed to a `precision` model against a `reference`-precision one.

    None (measured and reported, not gated) when the two compute in different
    precisions: the difference is then the precision's own rounding, which
    grows with the model's depth and is the user's to judge.
    """
    return TOLERANCE[precision] if precision == reference else None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How two models' outputs on the same inputs differ.

    Attributes:
        max_relative_error: Per output, the largest absolute difference over
            the largest absolute reference value; the largest over outputs.
            Infinite when the outputs differ in number or shape; NaN when an
            output is NaN.
        min_cosine: Smallest cosine similarity between a sample's reference
            and actual values (each output flattened), over samples and outputs.
        top1_agreement: Share of samples whose arg-max agrees, for outputs of
            shape (n, classes) (the smallest share over such outputs); None
            when no output has that shape.
    """

    max_relative_error: float
    min_cosine: float
    top1_agreement: float | None


def compare(reference: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> Comparison:
    """`actual` against `reference`: one array per model output, in the same order."""
    import numpy as np

    if len(reference) != len(actual) or any(np.shape(r) != np.shape(a) for r, a in zip(reference, actual)):
        return Comparison(float("inf"), float("nan"), None)
    errors, cosines, agreements = [], [], []
    for ref, act in zip(reference, actual):
        classes = np.ndim(ref) == 2 and np.shape(ref)[1] > 1
        ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
        act = np.asarray(act, np.float64).reshape(len(act), -1)
        errors.append(np.abs(act - ref).max() / max(np.abs(ref).max(), 1e-30))
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1)
        cosines.append(np.min(np.sum(ref * act, axis=1) / np.maximum(norms, 1e-30)))
        if classes:
            agreements.append(np.mean(ref.argmax(1) == act.argmax(1)))
    # max/min that keep a NaN: a NaN output must fail the gate, not vanish.
    return Comparison(
        float(np.max(errors)), float(np.min(cosines)), float(min(agreements)) if agreements else None
    )


def check_parity(error: float, limit: float | None, failure: type[ParityError], what: str, advice: str) -> None:
    """Raise `failure` when `error` is beyond `limit` (or NaN); None gates nothing."""
    if limit is not None and not error <= limit:
        raise failure(
            f"{what} must match the Keras model within {limit:g} (largest difference relative to "
            f"the largest value of each output). Received: max_relative_error={error:.3g}. {advice}"
        )


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """How the Predictor's outputs compare with the Keras model's, measured at construction.

    Attributes:
        samples: Inputs compared.
        inputs: Where they came from: "calibration" (the first images of the
            calibration set) or "random" (seeded standard normal).
        max_relative_error: Largest absolute difference over the largest
            Keras value, per output; the largest over outputs.
        min_cosine: Smallest cosine similarity between a sample's Keras and
            Predictor outputs (each output flattened).
        top1_agreement: Share of samples whose arg-max agrees, for outputs of
            shape (n, classes); None otherwise.
    """

    samples: int
    inputs: str
    max_relative_error: float
    min_cosine: float
    top1_agreement: float | None
