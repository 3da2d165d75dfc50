"""Precisions: the one definition, and what each runtime and export format runs.

Plain data (no NumPy, no Keras), so that the command line builds its
`--precision` and `--runtime` choices from here at `--help` speed, and
checks a combination before any download or model build. Every "which
precisions" question reads these tables: the Predictor, `export_for_inference`,
`optimize_for_inference`, the CLI's choices and the extraction's.

- `KERAS`: what `optimize_for_inference` computes in (a Keras dtype policy).
- `CALIBRATED`: precisions that need a calibration set (int8 measures its
  activation ranges on images; nothing in the model holds them).
- `BY_RUNTIME`: what each Predictor runtime compiles. `PREDICTOR` is their union.
- `BY_FORMAT`: what each export format's runtime loads. `EXPORT` is their union.
"""

from __future__ import annotations

from types import MappingProxyType

from ..errors import InvalidArgumentError

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
