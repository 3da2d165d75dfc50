"""The machine's arithmetic limit, measured with fma_peak.c on every core.

TensorFlow's matmul reaches a fraction of what the cores can do, so shares
of peak are taken against multiply-add loops compiled here (cc, AVX-512 with
BF16 and VNNI). On CPUs with AMX, bfloat16 and int8 run as tile multiplies
far above the AVX-512 loops: there amx_peak.c measures those two limits.
Where the loops cannot run (no compiler, another ISA) the benchmark falls
back to TensorFlow's matmul and says so.
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
AMX_SOURCE = Path(__file__).with_name("amx_peak.c")
AMX_FLAGS = ["-O3", "-mamx-tile", "-mamx-bf16", "-mamx-int8", "-pthread"]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _run_loop(source: Path, flags: list[str], tries: int) -> dict:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / source.stem
        subprocess.run([compiler, *flags, str(source), "-o", str(binary)], check=True)
        done = subprocess.run([str(binary), str(os.cpu_count() or 1), str(tries)],
                              check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def fma_peak(tries: int) -> dict | None:
    """{"float32", "bfloat16", "int8": G(FL)OP/s on all cores} or None (with why printed)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not {"avx512f", "avx512_bf16", "avx512_vnni"} <= cpu_flags():
        print("fma_peak: needs a C compiler and AVX-512 BF16/VNNI; falling back to matmul", flush=True)
        return None
    result = _run_loop(SOURCE, FLAGS, tries)
    return {k: result[k] for k in ("float32", "bfloat16", "int8")}


def amx_peak(tries: int) -> dict | None:
    """{"bfloat16", "int8": G(FL)OP/s of AMX tile loops on all cores}, or None without AMX."""
    if not {"amx_tile", "amx_bf16", "amx_int8"} <= cpu_flags():
        return None
    result = _run_loop(AMX_SOURCE, AMX_FLAGS, tries)
    return {k: result[k] for k in ("bfloat16", "int8")}


def machine_peak(tries: int) -> tuple[dict | None, str]:
    """The highest measured rate per precision and where each came from."""
    fma = fma_peak(tries)
    if fma is None:
        return None, "TensorFlow matmul"
    amx = amx_peak(tries)
    if amx is None:
        return fma, "FMA loop (benchmarks/fma_peak.c)"
    return {**fma, **{k: max(fma[k], v) for k, v in amx.items()}}, (
        "float32: FMA loop (benchmarks/fma_peak.c); bfloat16 and int8: AMX tile loop (benchmarks/amx_peak.c)")
