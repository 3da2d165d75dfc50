"""Parity (inference/precision.py): the one measure, tolerance table and gate that export and the Predictor share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resnet_keras.errors import ExportParityError, ParityError, PredictorParityError
from resnet_keras.inference.precision import TOLERANCE, check_parity, compare, tolerance

RNG = np.random.default_rng(3)
BIG = RNG.standard_normal((4, 6, 6, 8)).astype(np.float32) * 1000  # a feature map
SMALL = RNG.standard_normal((4, 10)).astype(np.float32)  # logits


def test_each_output_is_measured_against_its_own_scale():
    off = SMALL.copy()
    off[0, 0] += 1e-3 * np.abs(SMALL).max()  # tiny next to BIG, 1e-3 of its own output
    measured = compare([BIG, SMALL], [BIG, off])
    assert measured.max_relative_error == pytest.approx(1e-3, rel=1e-3)
    assert measured.min_cosine > 0.999 and measured.top1_agreement == 1.0


def test_top1_is_the_smallest_agreement_over_class_outputs_and_none_without_one():
    swapped = SMALL.copy()
    swapped[0] = -swapped[0]  # the first sample's arg-max moves
    assert compare([BIG, SMALL], [BIG, swapped]).top1_agreement == 3 / 4
    assert compare([BIG], [BIG]).top1_agreement is None


@pytest.mark.parametrize(
    "actual",
    [[BIG], [BIG, SMALL, SMALL], [BIG, SMALL[:, :5]], [BIG, np.full_like(SMALL, np.nan)]],
    ids=["an output missing", "an output too many", "a shape changed", "NaN in one output"],
)
def test_a_broken_output_fails_every_gate(actual):
    error = compare([BIG, SMALL], actual).max_relative_error
    assert math.isinf(error) or math.isnan(error)
    with pytest.raises(PredictorParityError, match=r"within 0.0001 .*Received: max_relative_error=(inf|nan)\. Do"):
        check_parity(error, TOLERANCE["float32"], PredictorParityError, "the engine", "Do this.")


def test_tolerance_gates_models_computing_alike_and_reports_the_rest():
    assert tolerance("float16", "float16") == TOLERANCE["float16"] == 5e-3
    assert tolerance("bfloat16", "float32") is None and tolerance("int8", "float32") is None
    check_parity(float("nan"), None, ExportParityError, "ungated", "")  # None gates nothing
    assert issubclass(ExportParityError, ParityError) and issubclass(PredictorParityError, RuntimeError)
