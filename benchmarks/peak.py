"""The machine's arithmetic limit, measured with fma_peak.c on every core.

TensorFlow's matmul reaches a fraction of what the cores can do, so shares
of peak are taken against multiply-add loops compiled here (cc, AVX-512 with
BF16 and VNNI). On CPUs with AMX, bfloat16 and int8 run as tile multiplies
far above the AVX-512 loops: there the same program, compiled for AMX too,
measures those two limits with tile loops.
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
AMX_FLAGS = ["-mamx-tile", "-mamx-bf16", "-mamx-int8"]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_peak(tries: int) -> tuple[dict | None, str]:
    """{"float32", "bfloat16", "int8": G(FL)OP/s on all cores} and where they came from, or
    (None, "TensorFlow matmul") where the loops cannot run (printed why)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    flags = cpu_flags()
    if compiler is None or not {"avx512f", "avx512_bf16", "avx512_vnni"} <= flags:
        print("fma_peak: needs a C compiler and AVX-512 BF16/VNNI; falling back to matmul", flush=True)
        return None, "TensorFlow matmul"
    amx = {"amx_tile", "amx_bf16", "amx_int8"} <= flags
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "fma_peak"
        build = [compiler, *FLAGS, str(SOURCE), "-o", str(binary)]
        if amx and subprocess.run([*build, *AMX_FLAGS], capture_output=True).returncode != 0:
            print("fma_peak: the compiler does not know AMX (gcc 11+); bfloat16 and int8 by AVX-512 only", flush=True)
            amx = False
        if not amx:
            subprocess.run(build, check=True)
        done = subprocess.run([str(binary), str(os.cpu_count() or 1), str(tries)],
                              check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    peak = {k: result[k] for k in ("float32", "bfloat16", "int8")}
    if not amx:
        return peak, "FMA loop (benchmarks/fma_peak.c)"
    peak.update({k: max(peak[k], result[f"amx_{k}"]) for k in ("bfloat16", "int8")})
    return peak, "benchmarks/fma_peak.c: float32 FMA loop, bfloat16 and int8 AMX tile loops"
