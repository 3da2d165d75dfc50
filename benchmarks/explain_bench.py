"""What a Grad-CAM explanation costs: `grad_cam` against a plain `predict`, same process.

ResNet50 (random weights: the cost does not depend on them) at 224x224,
batches of 8 and 16, on TensorFlow. Per batch, every repeat times, back to
back in rotating order:

- predict: `model.predict_on_batch(x)`, the forward pass users run;
- grad_cam: `resnet_keras.grad_cam(model, x)`, the predicted class;
- grad_cam top-5: `grad_cam(model, x, top5)`, five classes per image;
- forward+backward: the gradient of each image's top score with respect to
  the input, in a tf.function: what "one forward and one backward pass"
  costs, the bound the issue sets for an explanation.

Usage:
    python benchmarks/explain_bench.py [--batches 8 16] [--repeats 5] [--out docs/explain_cost.json]
    python benchmarks/explain_bench.py --quick   # 64x64, batch 2, one repeat: checks that it runs

Prints a Markdown table (median ms per image, ratio to predict) and the load
average before and after. Run it on a quiet machine: neighbours' load moves
absolute numbers by 2x (docs/FACTS), ratios measured in one run hold better.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import resnet_keras  # noqa: E402


def contenders(model: keras.Model, x: np.ndarray) -> dict:
    """name -> a function of no arguments that runs it once and fetches the result."""
    top5 = np.argsort(-model.predict_on_batch(x), axis=-1)[:, :5]
    images = tf.constant(x)

    @tf.function
    def forward_backward(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            scores = model(batch, training=False)
            top = tf.reduce_sum(tf.reduce_max(scores, axis=-1))
        return tape.gradient(top, batch)

    return {
        "predict": lambda: model.predict_on_batch(x),
        "grad_cam": lambda: resnet_keras.grad_cam(model, x),
        "grad_cam top-5": lambda: resnet_keras.grad_cam(model, x, top5),
        "forward+backward": lambda: forward_backward(images).numpy(),
    }


def measure(model: keras.Model, batch: int, size: int, repeats: int) -> dict:
    """{name: [seconds per call, one per repeat]} for one batch size."""
    x = np.random.default_rng(batch).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    calls = contenders(model, x)
    for call in calls.values():  # trace and warm up
        call()
        call()
    times = {name: [] for name in calls}
    names = list(calls)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def table(results: dict) -> str:
    lines = ["| batch | path | ms per image (median) | x predict |", "|---|---|---|---|"]
    for batch, times in results.items():
        base = statistics.median(times["predict"])
        for name, seconds in times.items():
            median = statistics.median(seconds)
            lines.append(f"| {batch} | {name} | {1000 * median / batch:.1f} | {median / base:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the numbers as JSON here")
    parser.add_argument("--quick", action="store_true", help="64x64, batch 2, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.size, args.repeats = [2], 64, 1

    load_before = os.getloadavg()
    keras.utils.set_random_seed(0)
    model = resnet_keras.ResNet50(weights=None, input_shape=(args.size, args.size, 3))
    results = {batch: measure(model, batch, args.size, args.repeats) for batch in args.batches}
    load_after = os.getloadavg()

    print(f"ResNet50, {args.size}x{args.size}, float32, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {args.repeats} repeats")
    print(table(results))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    summary = {
        "model": "resnet50", "size": args.size, "repeats": args.repeats,
        "load_average": [load_before[0], load_after[0]],
        "seconds_per_call": {str(batch): times for batch, times in results.items()},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
