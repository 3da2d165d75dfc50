"""Parity: how closely a compiled or exported model computes what Keras computes.

One measure (`compare`), one tolerance table (`TOLERANCE`) and one gate
(`check`), used by `export_for_inference` (the artifact against the folded
Keras model in the same precision) and by the Predictor (its engine against
the Keras model in float32). Every output of a model is compared, in
`keras.tree.flatten` order, each against its own largest value: a
multi-output model (feature maps C2..C5 of very different scales) is held
to the same rule as a classifier.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Sequence

import numpy as np

from ..errors import ParityError

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


def check(error: float, limit: float | None, failure: type[ParityError], what: str, advice: str) -> None:
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
