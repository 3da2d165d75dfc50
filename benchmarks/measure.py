"""Timing: build, weight loading and throughput, both libraries alternating.

Both libraries are timed the same way: a `tf.function` around
`model(x, training=False)`, traced and warmed up before timing. Every repeat
times all contenders back to back, the order rotating, so load drifts hit
all of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import resnet_keras
from official_files import seed_weights, write_official_format
from resnet_keras.architecture.counts import count_macs  # the package's own MAC convention
from results import OURS, THEIRS

def _builders(module) -> list[str]:
    """The builders a public module exports (ResNet50 ...), in its order."""
    return [name for name in module.__all__ if name.startswith("ResNet")]


# keras.applications namesakes of the builders of resnet_keras.resnet and .resnet_v2.
KERAS = {
    name.lower(): getattr(keras.applications, name)
    for module in (resnet_keras.resnet, resnet_keras.resnet_v2)
    for name in _builders(module)
}
# ImageNet-size models keras.applications lacks (ResNet18, ResNet34): absolute numbers only.
EXTRA = [name.lower() for name in _builders(resnet_keras.resnet_small)]


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
    seed_weights(source, seed=0)
    suffix = "" if include_top else "_notop"
    path = folder / f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    write_official_format(source, path)
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
