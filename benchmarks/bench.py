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
max. Then ResNet50 after `optimize_for_inference` (float32 and bfloat16)
against keras' float32 ResNet50. Shares of peak use the measured matmul peak
of this machine (float32 and bfloat16) and the multiply-adds counted from the
graph (2 FLOP each).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # official_format: writes Keras-2 HDF5 files

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import official_format  # noqa: E402
import resnet_keras  # noqa: E402
from resnet_keras.architecture.registry import BUILDERS, count_macs  # noqa: E402
from resnet_keras.architecture.specs import SPECS  # noqa: E402

# keras.applications counterparts: the builder of the same name (ResNet50 ...).
KERAS = {
    name: getattr(keras.applications, builder.__name__)
    for name, builder in BUILDERS.items()
    if hasattr(keras.applications, builder.__name__)
}
# ImageNet-size models of the registry that keras.applications does not have.
EXTRA = [n for n in resnet_keras.list_models() if n not in KERAS and SPECS[n].stem == "imagenet"]
OURS, THEIRS = "resnet_keras", "keras"


def log(*args):
    print(*args, flush=True)


def summary(values):
    values = list(values)
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# --- measurements ---------------------------------------------------------------


def matmul_peak(dtype: str, size: int, tries: int) -> float:
    """Best GFLOP/s of one size x size matmul in `dtype` (TF, all cores)."""
    a = tf.random.uniform((size, size), dtype="float32")
    a = tf.cast(a, dtype)
    step = tf.function(lambda x: tf.matmul(x, x))
    step(a).numpy()
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        step(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compiled(model):
    """The one inference call both libraries get: traced once, then reused."""
    return tf.function(lambda x: model(x, training=False))


def throughput(call, x, calls: int) -> float:
    """Images per second over `calls` consecutive calls (result fetched)."""
    start = time.perf_counter()
    for _ in range(calls):
        call(x).numpy()
    return calls * int(x.shape[0]) / (time.perf_counter() - start)


def throughputs(calls: dict, shape, args, repeats=None):
    """{batch: {name: [images/s per repeat]}}, and the last batch of inputs."""
    table = {}
    for batch in args.batches:
        x = tf.random.uniform((batch,) + shape, -1.0, 1.0)
        for call in calls.values():  # trace, then one untimed run
            call(x).numpy()
            call(x).numpy()
        n = args.calls[batch]
        table[batch] = alternate(
            repeats or args.repeats, calls, lambda call: throughput(call, x, n)
        )
    return table, x


def alternate(repeats: int, contenders: dict, measure) -> dict:
    """{name: [value per repeat]}; each repeat runs all, the order rotating."""
    names = list(contenders)
    results = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(measure(contenders[name]))
    return results


def ratios(ours, theirs):
    """ours / keras per repeat (paired: both ran back to back), summarized."""
    return summary(a / b for a, b in zip(ours, theirs))


def bench_model(name: str, args, folder: Path) -> dict:
    """Build, load and throughput for one model, ours against keras when keras has it."""
    builders = {OURS: lambda **kw: resnet_keras.get_model(name, **kw)}
    if name in KERAS:
        builders[THEIRS] = KERAS[name]
    shape = (args.size, args.size, 3)
    include_top = args.size == 224
    make = {
        lib: (lambda b=b: b(weights=None, include_top=include_top, input_shape=shape))
        for lib, b in builders.items()
    }

    # A weights file in the official layout, from the keras model where there is one.
    source = make[THEIRS if THEIRS in make else OURS]()
    official_format.randomize(source, seed=0)
    suffix = "" if include_top else "_notop"
    path = folder / f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    official_format.write_keras2_weights(source, path)
    macs = count_macs(source)
    del source

    for build in make.values():  # warm-up: first-use costs (imports, tracing helpers)
        build()
    build_s = alternate(args.repeats, make, timed)

    models = {lib: build() for lib, build in make.items()}
    loaders = {OURS: lambda: resnet_keras.load_weights(models[OURS], path)}
    if THEIRS in models:
        loaders[THEIRS] = lambda: models[THEIRS].load_weights(str(path))
    for load in loaders.values():
        load()
    load_s = alternate(args.repeats, loaders, timed)

    result = {
        "name": name,
        "macs": macs,
        "build_s": build_s,
        "load_s": load_s,
        "throughput": {},
    }
    calls = {lib: compiled(m) for lib, m in models.items()}
    result["throughput"], x = throughputs(calls, shape, args)
    if THEIRS in models:
        parity = np.abs(calls[OURS](x).numpy() - calls[THEIRS](x).numpy()).max()
        result["max_output_difference"] = float(parity)
    path.unlink()
    return result


def bench_fused(args) -> dict:
    """ResNet50: keras float32 against ours fused float32 and fused bfloat16."""
    shape = (args.size, args.size, 3)
    include_top = args.size == 224
    base = keras.applications.ResNet50(weights=None, include_top=include_top, input_shape=shape)
    official_format.randomize(base, seed=0)
    ours = resnet_keras.ResNet50(weights=None, include_top=include_top, input_shape=shape)
    ours.set_weights(base.get_weights())
    start = time.perf_counter()
    fused32 = resnet_keras.optimize_for_inference(ours, "float32")
    optimize_s = time.perf_counter() - start
    fused16 = resnet_keras.optimize_for_inference(ours, "bfloat16")
    models = {
        "keras float32": base,
        "resnet_keras fused float32": fused32,
        "resnet_keras fused bfloat16": fused16,
    }
    calls = {label: compiled(m) for label, m in models.items()}
    result = {"macs": count_macs(base), "optimize_s": optimize_s, "error": {}}
    result["throughput"], x = throughputs(calls, shape, args, args.repeats * 2)
    reference = calls["keras float32"](x).numpy()
    for label in list(models)[1:]:
        out = calls[label](x).numpy()
        result["error"][label] = float(np.abs(out - reference).max() / np.abs(reference).max())
    return result


# --- report ---------------------------------------------------------------------


def fmt_ratio(s: dict, digits=2) -> str:
    return f"{s['median']:.{digits}f}x ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def med(values) -> float:
    return statistics.median(values)


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing (pip install -e '.[bench]'); no plot written")
        return False
    models = [m for m in results["models"] if THEIRS in m["build_s"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / (len(results["batches"]) + 1)
    xs = np.arange(len(models))
    series = [("build time (keras / ours)", lambda m: [t / o for o, t in zip(m["build_s"][OURS], m["build_s"][THEIRS])])]
    for batch in results["batches"]:
        series.append(
            (f"throughput batch {batch} (ours / keras)",
             lambda m, b=batch: [o / t for o, t in zip(m["throughput"][b][OURS], m["throughput"][b][THEIRS])])
        )
    for i, (label, values) in enumerate(series):
        data = [values(m) for m in models]
        medians = np.array([med(d) for d in data])
        low = medians - np.array([min(d) for d in data])
        high = np.array([max(d) for d in data]) - medians
        left.bar(xs + (i - (len(series) - 1) / 2) * width, medians, width, yerr=[low, high],
                 capsize=3, label=label)
    left.axhline(1.0, color="k", lw=0.8)
    left.set_xticks(xs, [m["name"] for m in models])
    left.set_ylabel("speed-up of resnet_keras (>1 is faster)")
    left.set_title("resnet_keras vs keras.applications (median, min-max)")
    left.legend(fontsize=8, loc="lower right")
    fused = results["fused"]
    batch = max(results["batches"])
    labels = list(fused["throughput"][batch])
    values = [fused["throughput"][batch][label] for label in labels]
    medians = [med(v) for v in values]
    right.bar(range(len(labels)), medians,
              yerr=[[m - min(v) for m, v in zip(medians, values)], [max(v) - m for m, v in zip(medians, values)]],
              capsize=3, color=["tab:gray", "tab:blue", "tab:green"])
    flop = 2 * fused["macs"]
    for dtype, style in (("float32", "--"), ("bfloat16", ":")):
        right.axhline(results["peak_gflops"][dtype] * 1e9 / flop, color="k", ls=style, lw=0.8,
                      label=f"{dtype} matmul peak")
    right.set_xticks(range(len(labels)), [l.replace("resnet_keras ", "").replace(" ", "\n") for l in labels])
    right.set_ylabel("images / s")
    right.set_title(f"ResNet50, batch {batch}")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(results: dict, out: Path, plotted: bool) -> None:
    peak = results["peak_gflops"]
    env = results["environment"]
    loads = [sample[0] for sample in results["load_during"]]
    lines = [
        "# Performance",
        "",
        f"Written by `{results['command']}` on {results['date']} (one process, both libraries "
        "alternating; see the docstring of `benchmarks/bench.py` for the method). "
        "Rerun it to regenerate this page.",
        "",
        f"- Machine: {env['cpu']}, {env['cores']} cores; TensorFlow {env['tensorflow']}, "
        f"Keras {env['keras']}, Python {env['python']}.",
        f"- Load average (1 min; this run itself adds about 1): {results['load_before'][0]:.2f} "
        f"before the run, {min(loads):.2f}-{max(loads):.2f} during it (sampled after each "
        f"model), {results['load_after'][0]:.2f} after. "
        + ("Other processes shared the machine at times. "
           if max(loads) > 1.5 else "The machine was otherwise quiet. ")
        + f"With load above ~1 on {env['cores']} cores absolute numbers drop; ratios suffer "
        "less because the libraries alternate within each repeat.",
        f"- Input {results['size']}x{results['size']}x3; {results['repeats']} repeats per "
        f"measurement ({2 * results['repeats']} for the fused ResNet50 comparison); a repeat "
        "times each contender for "
        + ", ".join(f"{n} call(s) at batch {b}" for b, n in results["calls"].items()) + ".",
        f"- Measured matmul peak (TF, {results['peak_size']}x{results['peak_size']}): "
        f"float32 {peak['float32']:.0f} GFLOP/s, bfloat16 {peak['bfloat16']:.0f} GFLOP/s.",
        "",
    ]
    if plotted:
        lines += [f"![resnet_keras vs keras.applications]({results['plot']})", ""]

    # Fused
    fused = results["fused"]
    lines += [
        "## Fast inference: `optimize_for_inference` (ResNet50)",
        "",
        "| model | batch | images/s (median) | vs keras float32 (min-max) | share of peak | max rel. error vs keras |",
        "|---|---|---|---|---|---|",
    ]
    for batch in results["batches"]:
        table = fused["throughput"][batch]
        base = table["keras float32"]
        for label, values in table.items():
            dtype = "bfloat16" if "bfloat16" in label else "float32"
            share = med(values) * 2 * fused["macs"] / (peak[dtype] * 1e9)
            ratio = fmt_ratio(ratios(values, base)) if label != "keras float32" else "1.00x"
            error = fused["error"].get(label)
            lines.append(
                f"| {label} | {batch} | {med(values):.1f} | {ratio} | {share:.0%} of {dtype} | "
                f"{'—' if error is None else f'{error:.1e}'} |"
            )
    lines += [
        "",
        f"optimize_for_inference(ResNet50) itself took {fused['optimize_s']:.1f} s. "
        "Errors are on random inputs and random (seeded, BN statistics included) weights; "
        "softmax outputs when the top is included.",
        "",
        "## resnet_keras builders vs keras.applications",
        "",
        "Build: `Builder(weights=None)`; load: `resnet_keras.load_weights(model, file)` vs "
        "keras' `model.load_weights(file)` on the same official-format file. Times are medians; "
        "ratios are ours / keras per repeat, median (min-max): below 1 is faster for times, "
        "above 1 is faster for throughput. Share of the float32 peak = images/s x 2 x MACs / peak.",
        "",
        "| model | GMACs | build s (ours / keras) | build ratio | load s (ours / keras) | load ratio |"
        + "".join(f" img/s b{b} (ours / keras) | throughput ratio b{b} | share of peak b{b} |" for b in results["batches"]),
        "|---" * (6 + 3 * len(results["batches"])) + "|",
    ]
    for m in results["models"]:
        has_keras = THEIRS in m["build_s"]
        row = [m["name"], f"{m['macs'] / 1e9:.2f}"]
        for key in ("build_s", "load_s"):
            ours = med(m[key][OURS])
            if has_keras:
                row += [f"{ours:.2f} / {med(m[key][THEIRS]):.2f}", fmt_ratio(ratios(m[key][OURS], m[key][THEIRS]))]
            else:
                row += [f"{ours:.2f} / —", "—"]
        for b in results["batches"]:
            t = m["throughput"][b]
            ours = med(t[OURS])
            share = ours * 2 * m["macs"] / (peak["float32"] * 1e9)
            if has_keras:
                row += [f"{ours:.1f} / {med(t[THEIRS]):.1f}", fmt_ratio(ratios(t[OURS], t[THEIRS])), f"{share:.0%}"]
            else:
                row += [f"{ours:.1f} / —", "—", f"{share:.0%}"]
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Targets", ""]
    lines += [f"- {t}" for t in results["targets"]]
    lines += ["", "## Reading the numbers", ""] + [f"- {n}" for n in reading_notes(results)]
    lines += [
        "",
        "Raw per-repeat numbers: `docs/performance.json` (same run; "
        "`python benchmarks/bench.py --from-json docs/performance.json` re-renders this page "
        "and the plot from it without timing anything).",
        "",
    ]
    out.write_text("\n".join(lines))


def reading_notes(results: dict) -> list[str]:
    """Plain statements derived from the run, for the report."""
    paired = [m for m in results["models"] if THEIRS in m["build_s"]]
    spans = []
    for m in paired:
        spans.append(ratios(m["build_s"][OURS], m["build_s"][THEIRS]))
        spans += [ratios(m["throughput"][b][OURS], m["throughput"][b][THEIRS]) for b in results["batches"]]
    straddle = sum(s["min"] <= 1.0 <= s["max"] for s in spans)
    medians = [s["median"] for s in spans]
    notes = [
        "The plain builders build the same graph as keras.applications (same layers, same "
        "TensorFlow ops, same order), so equal speed is what to expect. Build and throughput "
        f"ratio medians range {min(medians):.2f}x-{max(medians):.2f}x, and {straddle} of the "
        f"{len(spans)} min-max ranges include 1.00x"
        + (": the differences are within run-to-run noise, and a target marked NOT met above "
           "misses within that noise, not by a slowdown that repeats."
           if straddle == len(spans) else
           "; the others point at a real difference worth a rerun on a quiet machine."),
    ]
    fused = results["fused"]
    batch = max(results["batches"])
    table = fused["throughput"][batch]
    flop = 2 * fused["macs"]
    peak = results["peak_gflops"]
    keras32 = med(table["keras float32"]) * flop / 1e9
    bf16 = med(table["resnet_keras fused bfloat16"]) * flop / 1e9
    notes += [
        f"At batch {batch} keras' float32 ResNet50 already runs at {keras32:.0f} GFLOP/s, "
        f"{keras32 / peak['float32']:.0%} of the measured float32 matmul peak; folding "
        "BatchNorm removes the elementwise passes between the convolutions, which is all "
        "float32 can still gain. bfloat16 doubles the arithmetic rate "
        f"({peak['bfloat16'] / peak['float32']:.2f}x the float32 peak here): the fused bfloat16 "
        f"model runs at {bf16:.0f} GFLOP/s, {bf16 / peak['bfloat16']:.0%} of the bfloat16 peak.",
        "Batch 1 leaves the cores idle between small convolutions (shares of peak are lower); "
        "reduced precision helps less there.",
    ]
    return notes


def targets(results: dict) -> list[str]:
    notes = []
    batch = max(results["batches"])
    for m in results["models"]:
        if THEIRS not in m["build_s"]:
            continue
        build = ratios(m["build_s"][OURS], m["build_s"][THEIRS])["median"]
        speeds = [ratios(m["throughput"][b][OURS], m["throughput"][b][THEIRS])["median"] for b in results["batches"]]
        ok = build <= 1.0 and all(s >= 1.0 for s in speeds)
        notes.append(
            f"{m['name']}: build {build:.2f}x (target <= 1.00), throughput "
            + ", ".join(f"b{b} {s:.2f}x" for b, s in zip(results["batches"], speeds))
            + f" (target >= 1.00): {'met' if ok else 'NOT met'}"
        )
    table = results["fused"]["throughput"][batch]
    for label, goal in (("resnet_keras fused float32", 1.10), ("resnet_keras fused bfloat16", 1.7)):
        r = ratios(table[label], table["keras float32"])["median"]
        notes.append(f"{label} vs keras float32 ResNet50, batch {batch}: {r:.2f}x (target >= {goal:.2f}): "
                     f"{'met' if r >= goal else 'NOT met'}")
    return notes


def restore(results: dict) -> dict:
    """JSON turned the batch keys into strings; make them ints again."""
    results["calls"] = {int(b): n for b, n in results["calls"].items()}
    for table in [m["throughput"] for m in results["models"]] + [results["fused"]["throughput"]]:
        for b in list(table):
            table[int(b)] = table.pop(b)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet50 + ResNet18, 2 repeats, few calls")
    parser.add_argument("--models", nargs="+", help="registry names (default: the six keras variants and 18/34)")
    parser.add_argument(
        "--repeats", type=int,
        help="repeats per measurement (default 6, quick 2; the fused comparison runs twice as many)",
    )
    parser.add_argument("--size", type=int, default=224, help="input size (default 224; below it, no top)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report of a saved run")
    args = parser.parse_args(argv)
    if args.from_json:
        results = restore(json.loads(args.from_json.read_text()))
        results["targets"] = targets(results)
        write_report(results, args.out, plot(results, args.out.with_suffix(".png")))
        log(f"wrote {args.out} from {args.from_json}")
        return 0
    args.repeats = args.repeats or (2 if args.quick else 6)
    args.batches = (1, 16)
    # Short blocks, many repeats: each pair of blocks runs close in time.
    args.calls = {1: 4, 16: 1}
    names = args.models or (["resnet50"] + EXTRA[:1] if args.quick else list(KERAS) + EXTRA)
    unknown = [n for n in names if n not in resnet_keras.list_models()]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {resnet_keras.list_models()}")

    load_before = os.getloadavg()
    log(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    peak_size = 2048
    peak = {d: matmul_peak(d, peak_size, 4 if args.quick else 12) for d in ("float32", "bfloat16")}
    log(f"matmul peak: float32 {peak['float32']:.0f} GFLOP/s, bfloat16 {peak['bfloat16']:.0f} GFLOP/s")

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
    fused = bench_fused(args)
    load_during.append(os.getloadavg())
    for label, values in fused["throughput"][max(args.batches)].items():
        log(f"ResNet50 {label}: {med(values):.1f} img/s")
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
        "peak_size": peak_size,
        "peak_gflops": peak,
        "models": models,
        "fused": fused,
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
