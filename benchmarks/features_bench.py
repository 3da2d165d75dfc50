"""`resnet-keras features --out FOLDER`: is the input pipeline the bottleneck,
does the Ray engine give the same numbers, and is memory flat?

On generated 256x256 JPEGs with ResNet50 (no top, avg pooling, seeded
weights in the official file layout), at one precision and batch size:

1. the model's own throughput on pre-decoded, preprocessed tensors (the
   extraction's inference function, warm, in this process);
2. `features` (local engine) on N images, in a fresh process: its
   images/s over the read-and-embed loop, and the ratio to (1);
3. `features --engine ray` on a local Ray with 2 CPUs on the same images:
   relative error against (2), every path exactly once, wall time and
   images/s against (2);
4. peak RSS of `features` (local) on N and on 4N images.

Usage:
    python benchmarks/features_bench.py [--images 2000] [--precision float32]
        [--batch-size 32] [--out docs/features_performance.md] [--quick]

`--quick` (64 images, no 4N run) checks that the script works. Writes the
numbers as a Markdown section (and a .json beside it). Run it on a quiet
machine: the ratio compares two runs made one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's resnet_keras, installed or not


def make_jpegs(folder: Path, count: int, side: int = 256, seed: int = 0) -> None:
    """Smooth random pictures (gradients plus noise), JPEG quality 90."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    for i in range(count):
        base = rng.uniform(0, 255, 3) * ramp[:, None, None] + rng.uniform(0, 255, 3) * ramp[None, :, None]
        pixels = np.clip(base / 2 + rng.normal(0, 12, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def write_weights(path: Path) -> None:
    import resnet_keras
    from official_files import seed_weights, write_official_format

    model = resnet_keras.ResNet50(weights=None, include_top=False)
    seed_weights(model, seed=1)
    write_official_format(model, path)


def model_throughput(weights: Path, precision: str, batch_size: int, batches: int) -> float:
    """Images/s of the extraction's inference function on ready tensors."""
    import resnet_keras
    from resnet_keras.extraction.engines import inference_function

    model = resnet_keras.ResNet50(weights=str(weights), include_top=False, pooling="avg",
                                  input_shape=(224, 224, 3))
    infer = inference_function(model, precision)
    x = np.random.default_rng(0).uniform(-120, 150, (batch_size, 224, 224, 3)).astype(np.float32)
    for _ in range(2):  # trace and warm up
        infer(x)
    start = time.perf_counter()
    for _ in range(batches):
        infer(x)
    return batches * batch_size / (time.perf_counter() - start)


def run_features(images: Path, out: Path, weights: Path, args, *extra) -> dict:
    """One `features` run in a fresh process: wall time, loop images/s, peak RSS."""
    command = [sys.executable, "-m", "resnet_keras", "features", str(images), "--out", str(out),
               "--weights", str(weights), "--batch-size", str(args.batch_size),
               "--precision", args.precision, "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # reaps it, with its own peak RSS
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0), stderr.seek(0)
        text, errors = stdout.read(), stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"features failed ({process.returncode}): {errors[-2000:]}")
    rate = float(re.search(r"([\d.]+) images/s", text).group(1))
    # Linux reports ru_maxrss in KiB
    return dict(wall_s=round(wall, 1), images_per_s=rate, peak_rss_mb=round(usage.ru_maxrss / 1024),
                stdout=text.strip())


def read(out: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    return table.column("path").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def main(argv=None) -> None:
    from resnet_keras.extraction import PRECISIONS  # plain data: what `features --out FOLDER` runs
    from resnet_keras.inference.precision import CALIBRATED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    # int8 would need a calibration set this benchmark does not make
    parser.add_argument("--precision", default="float32", choices=[p for p in PRECISIONS if p not in CALIBRATED])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(REPO / "docs" / "features_performance.md"))
    parser.add_argument("--quick", action="store_true", help="64 images, no 4N run")
    args = parser.parse_args(argv)
    n = 64 if args.quick else args.images
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "resnet50_seeded_notop.h5"
        write_weights(weights)
        make_jpegs(tmp / "big", n if args.quick else 4 * n)
        small = tmp / "small"
        small.mkdir()
        for path in sorted((tmp / "big").iterdir())[:n]:
            os.link(path, small / path.name)
        batches = max(4, min(40, n // args.batch_size))
        model_rate = model_throughput(weights, args.precision, args.batch_size, batches)
        local = run_features(small, tmp / "local", weights, args)
        ray_run = run_features(small, tmp / "ray", weights, args, "--engine", "ray")
        local_paths, local_rows = read(tmp / "local")
        ray_paths, ray_rows = read(tmp / "ray")
        relative = float(np.abs(ray_rows - local_rows).max() / np.abs(local_rows).max())
        once = ray_paths == local_paths and len(set(ray_paths)) == len(ray_paths) == n
        big = None if args.quick else run_features(tmp / "big", tmp / "local_big", weights, args)
    results = dict(
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        images=n, image_size="256x256 JPEG", model="resnet50 notop avg", precision=args.precision,
        batch_size=args.batch_size, model_images_per_s=round(model_rate, 1),
        features_local=local, ratio=round(local["images_per_s"] / model_rate, 3),
        features_ray=ray_run, ray_relative_error=relative, ray_every_path_once=once,
        ray_wall_over_local=round(ray_run["wall_s"] / local["wall_s"], 2),
        features_local_4n=big,
    )
    write_report(Path(args.out), results, " ".join(["python benchmarks/features_bench.py", *(argv or sys.argv[1:])]))
    print(json.dumps(results, indent=1))


def write_report(path: Path, r: dict, command: str) -> None:
    local, ray_run, big = r["features_local"], r["features_ray"], r["features_local_4n"]
    lines = [
        "# Feature extraction at scale: measured",
        "",
        f"`{command}` on {r['machine']}; {r['images']} {r['image_size']} images, {r['model']}, "
        f"{r['precision']}, batch {r['batch_size']}. Rates are over the read-and-embed loop "
        "(after TensorFlow's import and the model build).",
        "",
        "| what | images/s | wall s | peak RSS MB |",
        "|---|---|---|---|",
        f"| model alone, pre-decoded tensors | {r['model_images_per_s']} | | |",
        f"| `features` local engine (tf.data) | {local['images_per_s']} | {local['wall_s']} | {local['peak_rss_mb']} |",
        f"| `features --engine ray` (local Ray, {os.cpu_count()} CPUs) | {ray_run['images_per_s']} | "
        f"{ray_run['wall_s']} | |",
    ]
    if big:
        lines.append(f"| `features` local, {4 * r['images']} images | {big['images_per_s']} | {big['wall_s']} | "
                     f"{big['peak_rss_mb']} |")
    lines += [
        "",
        f"- Input pipeline: `features` reaches {r['ratio']:.1%} of the model's own throughput (target >= 90%).",
        f"- Ray engine vs local engine: relative error {r['ray_relative_error']:.1e} (target <= 1e-5), "
        f"every path exactly once: {r['ray_every_path_once']}; wall time {r['ray_wall_over_local']}x the "
        "local engine's (Ray's start-up and actor start included).",
    ]
    if big:
        lines.append(f"- Peak RSS: {local['peak_rss_mb']} MB for {r['images']} images, {big['peak_rss_mb']} MB "
                     f"for {4 * r['images']} (streamed, not collected).")
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
