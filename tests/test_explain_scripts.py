"""examples/explain.py (the docs picture) and benchmarks/explain_bench.py run end to end (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_example_writes_the_picture(tmp_path):
    out = tmp_path / "overlay.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "explain.py"), "--out", str(out), "--size", "32",
         "--train", "300", "--epochs", "2", "--examples", "3"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert "heatmap peak on the shape" in result.stdout
    with Image.open(out) as picture:  # 3 columns of 32 px x 6, framed; two rows and a caption strip
        assert picture.size == (3 * (6 * 32 + 8), 2 * 6 * 32 + 28)


@pytest.mark.slow
def test_the_benchmark_runs_and_writes_its_numbers(tmp_path):
    out = tmp_path / "cost.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "explain_bench.py"), "--quick",
                             "--out", str(out)], capture_output=True, text=True, timeout=600, check=True)
    assert "| 2 | grad_cam |" in result.stdout and "forward+backward" in result.stdout
    numbers = json.loads(out.read_text())
    assert set(numbers["seconds_per_call"]["2"]) == {"predict", "grad_cam", "grad_cam top-5", "forward+backward"}
