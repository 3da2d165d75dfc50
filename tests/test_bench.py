"""benchmarks/bench.py runs end to end on a tiny configuration (slow: about 2 min on 2 busy cores).

One model, the keras drop-in: its row compares against keras.applications
(a zoo-only model such as resnet18 goes through the same code without that
column).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench.py"


@pytest.mark.slow
def test_quick_benchmark_writes_the_report(tmp_path):
    out = tmp_path / "performance.md"
    subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--models", "resnet50",
         "--size", "32", "--repeats", "1", "--out", str(out)],
        check=True,
        timeout=600,
    )
    report = out.read_text()
    assert "## Inference paths" in report and "Predictor int8 (auto)" in report and "| resnet50 |" in report
    assert "Load average" in report and "GFLOP/s" in report
    results = json.loads(out.with_suffix(".json").read_text())
    assert {m["name"] for m in results["models"]} == {"resnet50"}
    assert results["models"][0]["max_output_difference"] < 1e-4  # same weights, same outputs
    assert out.with_suffix(".png").stat().st_size > 10_000
