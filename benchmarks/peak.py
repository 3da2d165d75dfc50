"""The machine's arithmetic limit, measured with fma_peak.c on every core.

TensorFlow's matmul reaches a fraction of what the cores can do, so shares
of peak are taken against multiply-add loops compiled here (cc, AVX-512 with
BF16 and VNNI). Where that cannot run (no compiler, another ISA) the
benchmark falls back to TensorFlow's matmul and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fma_peak.c")
FLAGS = ["-O3", "-mavx512f", "-mavx512bf16", "-mavx512vnni", "-pthread"]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fma_peak(tries: int) -> dict | None:
    """{"float32", "bfloat16", "int8": G(FL)OP/s on all cores} or None (with why printed)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not {"avx512f", "avx512_bf16", "avx512_vnni"} <= cpu_flags():
        print("fma_peak: needs a C compiler and AVX-512 BF16/VNNI; falling back to matmul", flush=True)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "fma_peak"
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(binary)], check=True)
        done = subprocess.run([str(binary), str(os.cpu_count() or 1), str(tries)],
                              check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    return {k: result[k] for k in ("float32", "bfloat16", "int8")}
