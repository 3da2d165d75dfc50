"""Fine-tuning on two devices gives the one-device losses (multi_device_worker.py).

Each check runs in the pass of its backend (tests/run_backends.sh), in a
subprocess: TensorFlow's logical CPUs and XLA's host device count must be
set before the backend starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.backend

WORKER = Path(__file__).with_name("multi_device_worker.py")
BACKEND = keras.backend.backend()


def run_worker(backend: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run(
        [sys.executable, str(WORKER), backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def check(result: dict, record) -> None:
    assert result["replicas"] == 2
    assert len(set(result["devices"])) == 2
    one = np.array(result["one_device_losses"])
    two = np.array(result["two_device_losses"])
    assert len(one) == 3 and one[-1] < one[0]  # it trained
    assert result["largest_update"] > 1e-3
    loss_error = float(np.max(np.abs(two - one) / np.abs(one)))
    record("two devices", "resnet18", "loss", loss_error)
    record("two devices", "resnet18", "weights", result["weight_relative_error"])
    assert loss_error < 1e-5
    assert result["weight_relative_error"] < 1e-5


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs in the TensorFlow pass")
def test_mirrored_strategy_on_two_cpus_gives_one_device_losses(record):
    check(run_worker("tensorflow"), record)


@pytest.mark.skipif(BACKEND != "jax", reason="runs in the JAX pass")
def test_jax_data_parallel_on_two_devices_gives_one_device_losses(record):
    check(run_worker("jax"), record)
