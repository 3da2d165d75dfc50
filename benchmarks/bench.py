"""resnet_keras against keras.applications, in one process, alternating.

    python benchmarks/bench.py            # full run (~10 min on 2 cores), writes docs/performance.md
    python benchmarks/bench.py --quick    # smoke test: ResNet50 and ResNet18, 2 repeats

For each keras ResNet (and ResNet18/34, which keras lacks: absolute numbers
only) it measures build time (weights=None), weight-load time from a local
official-format file (random seeded weights in the Keras-2 HDF5 layout of the
released files), and inference throughput at batch 1 and 16 in float32.
Both libraries are timed the same way: a `tf.function` around
`model(x, training=False)`, traced and warmed up before timing. Every repeat
times both libraries back to back, the order swapping each repeat, so load
drifts hit both; ratios are taken per repeat and reported as min / median /
max. Then every inference path for ResNet50 in one alternating run: keras
(float32, mixed_bfloat16), the peers (onnxruntime and OpenVINO on the ONNX
export, OpenVINO int8 by NNCF) and resnet_keras' Predictor on each runtime
and precision (`paths.py`, `peers.py`). Shares of peak use the machine's
multiply-add limit measured by an AVX-512 loop on every core (`fma_peak.c`,
float32, bfloat16 and int8; on CPUs with AMX, bfloat16 and int8 by a tile
loop in the same program) and the multiply-adds counted from the graph (2 FLOP
each); TensorFlow's matmul rate is reported beside it.
`--from-json docs/performance.json --measure-peak` measures the limit again
and re-renders the page from the saved timings.

The parts: `measure.py` times (and picks the contenders), `paths.py` and
`peers.py` the inference paths, `peak.py` the arithmetic limit,
`official_files.py` writes the weights files both libraries load, `report.py`
writes the page and its plot, `results.py` holds the labels and per-repeat
summaries they share.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's resnet_keras, installed or not

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import resnet_keras  # noqa: E402
from measure import EXTRA, KERAS, bench_model, matmul_peak  # noqa: E402
from paths import bench_paths  # noqa: E402
from peak import machine_peak  # noqa: E402
from report import plot, targets, write_report  # noqa: E402
from results import OURS, THEIRS, med, restore  # noqa: E402


def log(*args):
    print(*args, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet50 + ResNet18, 2 repeats, few calls")
    parser.add_argument("--models", nargs="+", help="registry names (default: the six keras variants and 18/34)")
    parser.add_argument(
        "--repeats", type=int,
        help="repeats per measurement (default 6, quick 2; the inference paths run twice as many)",
    )
    parser.add_argument("--size", type=int, default=224, help="input size (default 224; below it, no top)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report of a saved run")
    parser.add_argument("--measure-peak", action="store_true",
                        help="with --from-json: measure the machine's limit again (the timings stay the saved run's)")
    args = parser.parse_args(argv)
    if args.measure_peak and not args.from_json:
        parser.error("--measure-peak measures the limit for a saved run: give --from-json FILE too")
    if args.from_json:
        results = restore(json.loads(args.from_json.read_text()))
        if args.measure_peak:
            peak, source = machine_peak(7)
            if peak is None:
                parser.error("--measure-peak needs a C compiler and AVX-512 BF16/VNNI; the saved peak is kept")
            results["peak_gflops"], results["peak_source"] = peak, source
            results["peak_measured"] = (f"`python benchmarks/bench.py --from-json {args.from_json} --measure-peak` on "
                                        + datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
            args.from_json.write_text(json.dumps(results, indent=1, default=str) + "\n")
        results["targets"] = targets(results)
        write_report(results, args.out, plot(results, args.out.with_suffix(".png")))
        log(f"wrote {args.out} from {args.from_json}")
        return 0
    args.repeats = args.repeats or (2 if args.quick else 6)
    args.batches = (1, 16)
    # Short blocks, many repeats: each pair of blocks runs close in time.
    args.calls = {1: 4, 16: 1}
    args.path_calls = {1: 8, 16: 2}
    names = args.models or (["resnet50"] + EXTRA[:1] if args.quick else list(KERAS) + EXTRA)
    unknown = [n for n in names if n not in resnet_keras.list_models()]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {resnet_keras.list_models()}")

    load_before = os.getloadavg()
    log(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    peak_size = 2048
    matmul = {d: matmul_peak(d, peak_size, 4 if args.quick else 12) for d in ("float32", "bfloat16")}
    log(f"TF matmul: float32 {matmul['float32']:.0f} GFLOP/s, bfloat16 {matmul['bfloat16']:.0f} GFLOP/s")
    fma, peak_source = machine_peak(3 if args.quick else 7)
    if fma:
        log(f"peak ({peak_source}): " + ", ".join(f"{k} {v:.0f}" for k, v in fma.items()) + " G(FL)OP/s")
    # Shares of peak are taken against the FMA loop; int8 falls back to twice bfloat16's matmul.
    peak = fma or {**matmul, "int8": 2 * matmul["bfloat16"]}

    started = time.perf_counter()
    load_during = []
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            result = bench_model(name, args, Path(tmp))
            models.append(result)
            b = max(args.batches)
            t = result["throughput"][b]
            log(f"{name}: build {med(result['build_s'][OURS]):.2f}s"
                + (f" vs {med(result['build_s'][THEIRS]):.2f}s" if THEIRS in t else "")
                + f", {b}: {med(t[OURS]):.1f} img/s"
                + (f" vs {med(t[THEIRS]):.1f} img/s" if THEIRS in t else "")
                + f"  [{time.perf_counter() - started:.0f}s]")
            keras.backend.clear_session()
            gc.collect()
            load_during.append(os.getloadavg())
    log("ResNet50 inference paths:")
    paths = bench_paths(args)
    load_during.append(os.getloadavg())
    for batch in args.batches:
        for label, values in paths["throughput"][batch].items():
            log(f"  batch {batch}: {label}: {med(values):.1f} img/s")
    load_after = os.getloadavg()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = args.out.with_suffix(".png")
    results = {
        "command": "python benchmarks/bench.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "environment": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "load_before": load_before,
        "load_after": load_after,
        "load_during": load_during,
        "size": args.size,
        "repeats": args.repeats,
        "batches": list(args.batches),
        "calls": args.calls,
        "path_calls": args.path_calls,
        "peak_size": peak_size,
        "matmul_gflops": matmul,
        "peak_source": peak_source,
        "peak_gflops": peak,
        "models": models,
        "paths": paths,
        "plot": plot_path.name,
        "seconds": time.perf_counter() - started,
    }
    results["targets"] = targets(results)
    plotted = plot(results, plot_path)
    write_report(results, args.out, plotted)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    for note in results["targets"]:
        log(note)
    log(f"wrote {args.out} in {time.perf_counter() - started:.0f} s; load average now "
        f"{load_after[0]:.2f}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
