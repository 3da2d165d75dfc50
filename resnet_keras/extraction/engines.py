"""Where the images are decoded and the model runs: here, or on Ray.

Each engine yields `(positions, embeddings, problems)` per batch, in the
order of `positions` it was given: embeddings is float32 (n, dim) (zeros
where the image could not be read) and problems is "" or the reason, per
row. `write_batches` turns that stream into shards. Neither engine
schedules anything itself: tf.data runs the local input pipeline, Ray Data
the distributed one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError
from ..images import Transform, preprocess, read_pixels

Batch = tuple[np.ndarray, np.ndarray, Sequence[str]]


def model_input(path: str, transform: Transform, preprocessing: str | None,
                max_bytes: int | None = None) -> tuple[np.ndarray, str]:
    """(pixels ready for the model, "") for a readable file, else (zeros, reason).

    `read_pixels` then `preprocess`: the rules of `classify`, one image at a
    time (both are per image, so a batch of these is exactly what
    `preprocess(load_batch(...))` gives).
    """
    pixels = read_pixels(path, transform, max_bytes=max_bytes)
    if isinstance(pixels, str):
        return np.zeros((*transform.size, 3), np.float32), pixels
    return np.ascontiguousarray(preprocess(pixels, preprocessing), np.float32), ""


def inference_function(model: Any, precision: str, runtime: str = "auto",
                       calibration: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The one place an extraction (and `classify` with a Predictor) calls the model: batch in,
    float32 rows out. A `resnet_keras.Predictor`: the fastest runtime installed for `precision`
    unless `runtime` names one; int8 calibrates on `calibration`."""
    from ..inference.predictor import Predictor

    predictor = Predictor(model, precision=precision, runtime=runtime, calibration=calibration)
    run = lambda batch: np.asarray(predictor.predict(batch, batch_size=len(batch)), np.float32)  # noqa: E731
    run.predictor = predictor  # what the command line reports
    return run


def _embed(infer: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray,
           problems: Sequence[str], dim: int) -> np.ndarray:
    """Run the model on the readable rows; zeros where a row has a problem."""
    readable = np.array([not problem for problem in problems], bool)
    embeddings = np.zeros((len(readable), dim), np.float32)
    if readable.any():
        embeddings[readable] = infer(pixels[readable])
    return embeddings


# ---------------------------------------------------------------------------
# local: tf.data decodes on all cores while the model runs


def local_batches(files: Sequence[str], positions: Sequence[int], *, transform: Transform,
                  preprocessing: str | None, max_bytes: int, batch_size: int, infer: Callable,
                  dim: int) -> Iterator[Batch]:
    """Read `files[p]` for p in `positions` with a parallel tf.data pipeline; `infer` embeds."""
    import tensorflow as tf

    height, width = transform.size

    def load(position):
        pixels, problem = model_input(files[int(position)], transform, preprocessing, max_bytes)
        return pixels, problem.encode("utf-8")  # printable text: always UTF-8

    def read(position):
        pixels, problem = tf.numpy_function(load, [position], (tf.float32, tf.string), stateful=False)
        pixels.set_shape((height, width, 3))
        problem.set_shape(())
        return position, pixels, problem

    dataset = (
        tf.data.Dataset.from_tensor_slices(np.asarray(positions, np.int64))
        .map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    for batch_positions, pixels, problems in dataset.as_numpy_iterator():
        problems = [p.decode("utf-8") for p in problems]
        yield batch_positions, _embed(infer, pixels, problems, dim), problems


# ---------------------------------------------------------------------------
# Ray Data: decode in tasks, one model per actor (map_batches with a class)


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            "engine='ray' needs Ray Data, which is not installed. "
            f"Received: {error}. Install it with `pip install \"resnet-keras[ray]\"`, "
            "or use engine='local'."
        ) from error
    return ray


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How the Ray engine is placed: passed through to Ray, nothing scheduled here."""

    address: str | None = None  # None: RAY_ADDRESS, else a local Ray for the run
    actors: int = 1  # model replicas (map_batches concurrency)
    cpus_per_actor: float = 1
    gpus_per_actor: float = 0


def _decode_batch(batch: dict[str, np.ndarray], transform: Transform, preprocessing: str | None,
                  max_bytes: int) -> dict:
    inputs = [model_input(os.fsdecode(f), transform, preprocessing, max_bytes) for f in batch["file"]]
    return {
        "position": batch["position"],
        "pixels": np.stack([pixels for pixels, _ in inputs]),
        "problem": np.array([problem for _, problem in inputs], dtype=object),
    }


class _Embedder:
    """One model per Ray actor, built from the driver's weights (and calibration pixels)."""

    def __init__(self, source, pooling: str, side: int, precision: str, runtime: str, weights: list,
                 calibration: np.ndarray | None):
        # The driver sends the weights it loaded and the calibration pixels it
        # read: no worker downloads or opens a file, every actor has the same numbers.
        model = source.blank(pooling=pooling, size=side)
        model.set_weights(weights)
        self.dim = int(model.output_shape[-1])
        self.infer = inference_function(model, precision, runtime, calibration)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        problems = [str(p) for p in batch["problem"]]
        return {
            "position": batch["position"],
            "embedding": _embed(self.infer, batch["pixels"], problems, self.dim),
            "problem": batch["problem"],
        }


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Ray for one run, its nodes checked against `options` before anything is submitted.

    An initialized Ray (the caller's) is used as it is; otherwise one is
    started at `options.address` (else RAY_ADDRESS, else a local Ray) and
    shut down afterwards.
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        address = options.address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        check_ray_resources(options, [node["Resources"] for node in ray.nodes() if node.get("Alive")])
        yield
    finally:
        if started:
            ray.shutdown()


def check_ray_resources(options: RayOptions, nodes: Sequence[dict[str, float]]) -> None:
    """Refuse model actors the cluster cannot place: Ray would wait for them forever.

    `nodes` holds the resources of each live node (`ray.nodes()`). Each actor
    must fit on one node, and all of them together must leave one CPU free
    for the decoding tasks (Ray Data gives each task one CPU).
    """
    problems = []
    for name, per_actor, spare in (("CPU", options.cpus_per_actor, 1), ("GPU", options.gpus_per_actor, 0)):
        if not per_actor:
            continue
        largest = max((node.get(name, 0) for node in nodes), default=0)
        total = sum(node.get(name, 0) for node in nodes)
        if per_actor > largest:
            problems.append(f"one actor needs {per_actor:g} {name}s, the largest node has {largest:g}")
        elif options.actors * per_actor + spare > total:
            decoding = " plus 1 CPU for decoding" if spare else ""
            problems.append(f"{options.actors} actors x {per_actor:g} {name}s{decoding} is more than "
                            f"the cluster's {total:g}")
    if problems:
        raise InvalidArgumentError(
            f"Ray must be able to place every model actor, or the run waits forever: {'; '.join(problems)}. "
            f"Received: actors={options.actors}, cpus_per_actor={options.cpus_per_actor:g}, "
            f"gpus_per_actor={options.gpus_per_actor:g}. Ask for fewer, or add nodes to the cluster."
        )


def ray_batches(files: Sequence[str], shards: Iterable[Sequence[int]], *, transform: Transform,
                preprocessing: str | None, max_bytes: int, batch_size: int, source: Any,
                pooling: str, weights: list, precision: str, runtime: str, calibration: np.ndarray | None,
                options: RayOptions) -> Iterator[Batch]:
    """The same batches, computed by Ray Data (in a `ray_session`); one Arrow block per shard."""
    ray = require_ray()
    import pyarrow as pa

    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # rows come back in list order
    context.enable_progress_bars = False  # the caller shows one bar
    try:
        blocks = [
            pa.table({
                "position": pa.array(list(positions), pa.int64()),
                # bytes: a name need not be valid UTF-8
                "file": pa.array([os.fsencode(os.path.abspath(files[p])) for p in positions], pa.binary()),
            })
            for positions in shards
        ]
        dataset = (
            ray.data.from_arrow(blocks)
            .map_batches(_decode_batch, fn_kwargs=dict(transform=transform, preprocessing=preprocessing,
                                                       max_bytes=max_bytes),
                         batch_size=batch_size, batch_format="numpy")
            .map_batches(
                _Embedder,
                fn_constructor_kwargs=dict(source=source, pooling=pooling, side=transform.size[0],
                                           precision=precision, runtime=runtime, weights=weights,
                                           calibration=calibration),
                compute=ray.data.ActorPoolStrategy(size=options.actors),
                num_cpus=options.cpus_per_actor,
                num_gpus=options.gpus_per_actor, batch_size=batch_size, batch_format="numpy",
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield batch["position"], batch["embedding"], [str(p) for p in batch["problem"]]
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


# ---------------------------------------------------------------------------
# the stream into shards


def write_batches(store: Any, batches: Iterable[Batch],
                  on_rows: Callable[[int], None] = lambda n: None) -> None:
    """Write the engine's rows into the store's pending shards, committing each when full.

    `store`: a `store.FeatureStore`, or the .npz sink (`store.NpzFile`).

    Checks that rows arrive exactly in the order of the pending positions,
    so no engine can drop, repeat or reorder an image unnoticed.
    """
    plan = store.plan
    pending = store.pending()
    expected = (p for shard in pending for p in plan.positions(shard))
    writer, shard, left = None, None, 0
    try:
        for positions, embeddings, problems in batches:
            for row, position in enumerate(positions):
                if position != next(expected, None):
                    raise RuntimeError(f"engine returned position {position} out of order")
                if writer is None:
                    shard = plan.shard_of(int(position))
                    writer, left = store.writer(shard), len(plan.positions(shard))
                path = plan.paths[int(position)]
                if problems[row]:
                    writer.add_error(path, problems[row])
                else:
                    writer.add([path], embeddings[row : row + 1])
                left -= 1
                if left == 0:
                    store.commit(shard, writer)
                    writer = None
            on_rows(len(positions))
        if writer is not None or next(expected, None) is not None:
            raise RuntimeError("engine stopped before every image was processed")
    finally:
        if writer is not None:
            writer.abandon()
