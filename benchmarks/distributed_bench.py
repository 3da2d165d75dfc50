"""Data-parallel fine-tuning: images/s in 1 and 2 worker processes, the bytes all-reduced per
step (measured in the compiled training step), and what that means on a cluster.

On one machine the workers share its cores, so 2 processes cannot be faster
than 1: the point here is the overhead of the distributed engine, and
correctness is proven by tests/test_finetune_distributed_runs.py. The runs:

1. `fine_tune` in this process (TensorFlow backend), for reference;
2. `fine_tune(distributed=1)`: one JAX worker process (the engine, no peer);
3. `fine_tune(distributed=2)`: two JAX workers over loopback (gloo collectives).

Same model (random weights), same generated JPEGs, all layers training
(`head_epochs=0`), BatchNorm frozen (the default), float32. Rates are steady
training images/s of the last epoch (worker 0's clock; every step waits for
both workers). Start-up is the rest of the wall time (process start,
imports, the JAX cluster, decoding, compiling).

Communication: XLA dumps the optimized HLO of the training step
(`--xla_dump_to`) in the 2-worker run; the bytes of its all-reduce results
are what each step all-reduces (the gradients of the trainable variables,
combined into one all-reduce, plus the loss). Against 4 bytes x trainable
parameters, and projected to ResNet50 (all layers, frozen BatchNorm,
`--classes` outputs): a ring all-reduce moves 2(P-1)/P x S bytes through
each worker's link per step, so at `--link-gbps` the step waits
2(P-1)/P x S / bandwidth (XLA on CPUs does not overlap it with compute).

Usage:
    python benchmarks/distributed_bench.py [--model resnet50] [--size 224] [--images 128]
        [--batch-size 32] [--epochs 2] [--out docs/distributed.md] [--quick]

`--quick` (ResNet20 at 32x32, 64 images, batch 16, 2 epochs) checks that the
script works and writes nothing. Run the real thing on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
BEGIN, END = "<!-- distributed-bench -->", "<!-- /distributed-bench -->"
BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
         "f64": 8, "s64": 8, "u64": 8}
_ARRAY = re.compile(r"\b(" + "|".join(BYTES) + r")\[([\d,]*)\]")
_ALL_REDUCE = re.compile(r"=\s*(.*?)\s+all-reduce(?:-start)?\(")


def all_reduce_bytes(dump: Path) -> int:
    """Bytes of the all-reduce results in the optimized HLO of the training step (one step)."""
    steps = sorted(dump.glob("*train_step*after_optimizations.txt"))
    if not steps:
        raise SystemExit(f"no optimized training step in {dump}: did XLA_FLAGS reach the workers?")
    total = 0
    for line in steps[-1].read_text().splitlines():
        match = _ALL_REDUCE.search(line)
        if match:
            for dtype, dims in _ARRAY.findall(match.group(1)):
                size = 1
                for d in filter(None, dims.split(",")):
                    size *= int(d)
                total += BYTES[dtype] * size
    return total


def trainable_parameters(model: str, size: int, classes: int) -> int:
    """Trainable parameters of `model` as fine_tune trains it after unfreezing (BatchNorm frozen)."""
    import keras

    from resnet_keras.architecture.specs import SPECS
    from resnet_keras.finetune.model import classifier

    net = classifier(SPECS[model], classes=classes, input_size=size)
    frozen = sum(int(w.numpy().size) for layer in net.layers
                 if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights)
    return net.count_params() - frozen


def run(folder: Path, args, workers: int | None) -> dict:
    import resnet_keras

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = resnet_keras.fine_tune(
            folder, args.model, None, head_epochs=0, epochs=args.epochs, batch_size=args.batch_size,
            validation_split=0.0, input_size=args.size, precision="float32", progress=False,
            out=Path(out) / "run", distributed=workers)
    wall = time.perf_counter() - began
    last = result.history[-1]
    return dict(images_per_second=last["steady_images_per_second"], wall_seconds=wall,
                startup_seconds=wall - sum(h["seconds"] for h in result.history))


def main(argv=None) -> None:
    from finetune_bench import make_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--classes", type=int, default=1000, help="outputs of the projected ResNet50")
    parser.add_argument("--link-gbps", type=float, nargs="+", default=[10.0, 100.0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "distributed.md")
    parser.add_argument("--quick", action="store_true", help="ResNet20, 32x32, 64 images, 2 epochs; writes nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.size, args.images, args.batch_size, args.epochs = "resnet20", 32, 64, 16, 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = make_folder(Path(scratch) / "data", args.images)
        dump = Path(scratch) / "hlo"
        for name, workers in (("one process (TensorFlow)", None), ("1 JAX worker", 1), ("2 JAX workers", 2)):
            if workers == 2:  # the workers inherit it; only the training step is dumped
                os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                           f" --xla_dump_to={dump} --xla_dump_hlo_module_re=.*train_step.*").strip()
            runs[name] = run(folder, args, workers)
            print(f"{name}: {runs[name]}", file=sys.stderr, flush=True)
        measured = all_reduce_bytes(dump)
    params = trainable_parameters(args.model, args.size, 4)
    resnet50 = trainable_parameters("resnet50", 224, args.classes)
    one = runs["1 JAX worker"]["images_per_second"]
    projection = {}
    for gbps in args.link_gbps:
        for p in (2, 8, 32):
            seconds = 2 * (p - 1) / p * 4 * resnet50 / (gbps * 1e9 / 8)
            projection[f"{gbps:g} Gb/s, {p} workers"] = seconds
    result = dict(
        model=args.model, size=args.size, images=args.images, batch_size=args.batch_size, epochs=args.epochs,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs", runs=runs,
        two_over_one=runs["2 JAX workers"]["images_per_second"] / one,
        all_reduce_bytes_per_step=measured, trainable_parameters=params, gradient_bytes=4 * params,
        resnet50_trainable_parameters=resnet50, resnet50_gradient_bytes=4 * resnet50, classes=args.classes,
        resnet50_all_reduce_seconds=projection)
    print(json.dumps(result, indent=1))
    if not args.quick:
        command = "python benchmarks/distributed_bench.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
        write_docs(args.out, result, command)


def write_docs(path: Path, r: dict, command: str) -> None:
    rows = "\n".join(f"| {name} | {v['images_per_second']:.1f} | {v['startup_seconds']:.0f} |"
                     for name, v in r["runs"].items())
    mb = r["resnet50_gradient_bytes"] / 1e6
    projection = "\n".join(f"| {k} | {1000 * v:.0f} ms |" for k, v in r["resnet50_all_reduce_seconds"].items())
    section = f"""{BEGIN}
`{command}` on {r['machine']}: {r['model']} at {r['size']}x{r['size']}, {r['images']} JPEGs, global batch
{r['batch_size']}, all layers training (BatchNorm frozen), float32, steady images/s of the last of {r['epochs']} epochs.

| run | training images/s | start-up and compiling, s |
|---|---|---|
{rows}

- 2 workers / 1 worker on this machine: {r['two_over_one']:.2f} (they share its cores: the cost of the engine, not a speed-up).
- Measured per step (the all-reduce of the compiled training step): {r['all_reduce_bytes_per_step']:,} bytes;
  4 bytes x {r['trainable_parameters']:,} trainable parameters = {r['gradient_bytes']:,} bytes (the rest: the loss).
- ResNet50 ({r['classes']} classes, all layers, BatchNorm frozen): {r['resnet50_trainable_parameters']:,} trainable
  parameters, {mb:.1f} MB of float32 gradients per step. Time a ring all-reduce of them takes per step:

| link, workers | all-reduce per step |
|---|---|
{projection}
{END}"""
    text = path.read_text(encoding="utf-8")
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    path.write_text(text, encoding="utf-8")
    path.with_name("distributed_bench.json").write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
