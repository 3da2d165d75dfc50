"""`Predictor.predict` from one thread and from several: images/s on each runtime.

For each runtime, one float32 Predictor of a seeded model; each thread
predicts its own batch in a loop for `--seconds`, all threads started
together; the images done over the wall time is the throughput. Thread counts
alternate (1, 2, 1, 2, ...) for `--repeats` rounds, so a busy machine slows
both alike; the median of each is printed, with the ratio of the medians.

Usage:
    python benchmarks/predictor_threads.py [--model resnet20] [--size 32]
        [--batch-size 8] [--threads 1 2] [--seconds 3] [--repeats 3]
        [--runtimes openvino onnxruntime tensorflow]

Prints a Markdown table. A quick check: --seconds 0.2 --repeats 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's resnet_keras, installed or not


def images_per_second(predictor, batches: list, seconds: float) -> float:
    """All threads (one per batch) predicting in a loop for `seconds`, started together."""
    start, done = threading.Barrier(len(batches) + 1), [0] * len(batches)
    stop = threading.Event()

    def work(index: int) -> None:
        start.wait()
        while not stop.is_set():
            predictor.predict(batches[index], batch_size=len(batches[index]))
            done[index] += len(batches[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", nargs="+", default=["openvino", "onnxruntime", "tensorflow"])
    args = parser.parse_args()

    import resnet_keras
    from official_files import seed_weights

    model = resnet_keras.get_model(args.model, weights=None, input_shape=(args.size, args.size, 3))
    seed_weights(model, seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((args.batch_size, args.size, args.size, 3)).astype(np.float32)
               for _ in range(max(args.threads))]
    print(f"{args.model} at {args.size}x{args.size}, batch {args.batch_size}, float32, "
          f"{args.seconds:g} s per measure, {args.repeats} rounds (median images/s)\n")
    print("| runtime | " + " | ".join(f"{n} thread{'s' * (n > 1)}" for n in args.threads)
          + f" | {args.threads[-1]} vs {args.threads[0]} |")
    print("|---" * (len(args.threads) + 2) + "|")
    for runtime in args.runtimes:
        predictor = resnet_keras.Predictor(model, runtime=runtime)
        predictor.predict(batches[0], batch_size=args.batch_size)  # the batch shape tuned before timing
        measured = {n: [] for n in args.threads}
        for _ in range(args.repeats):
            for n in args.threads:
                measured[n].append(images_per_second(predictor, batches[:n], args.seconds))
        medians = [statistics.median(measured[n]) for n in args.threads]
        print(f"| {runtime} | " + " | ".join(f"{m:.0f}" for m in medians)
              + f" | {medians[-1] / medians[0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
