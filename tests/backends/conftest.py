"""Fixtures of the backend tests (marker `backend`; run by tests/run_backends.sh).

Keras fixes its backend at import, so each backend is its own pytest
process with KERAS_BACKEND set. The measured errors are collected and
printed as one table at the end of the run.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import make_backend_golden as golden_lib

BACKEND = keras.backend.backend()
MEASURED: list[tuple[str, str, str, float]] = []


@pytest.fixture(scope="session")
def golden():
    with np.load(golden_lib.GOLDEN, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture
def record():
    """record(check, model, output, relative_error): keep it for the table."""

    def add(check: str, model: str, output: str, error: float) -> None:
        MEASURED.append((check, model, output, error))

    return add


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section(f"relative errors on the {BACKEND} backend")
    for check, model, output, error in MEASURED:
        terminalreporter.write_line(
            f"{BACKEND:10s} {check:16s} {model:12s} {output:9s} {error:.2e}"
        )
