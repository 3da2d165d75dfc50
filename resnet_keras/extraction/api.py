"""`extract_features`: the one orchestration of an extraction (see the package docstring).

`prepare(...)` checks everything (`plan.plan_job`) and returns a `Prepared`
whose `run()` does the work (`run_job`); `extract_features` is the two in
one call. The command line calls `prepare`, imports Keras quietly, then
`run()`, and prints the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .engines import RayOptions
from .plan import Job, plan_job
from .records import Settings


@dataclasses.dataclass(frozen=True)
class ExtractionSummary:
    """What a run did.

    Attributes:
        out: The output folder (or .npz file).
        images: Images in the list.
        rows: Rows in the output (readable images).
        errors: Unreadable images (listed in `out/_errors.csv`).
        shards: Shards in the output (1 for an .npz).
        resumed_shards: Shards a previous run had finished (skipped now).
        dim: Values per embedding.
        seconds: Time spent reading and embedding in this run.
        images_per_second: Images per second this run processed after its
            first batch (which holds the pipeline's start and the first trace).
        sink: "parquet" or "npz".
        settings: What decided the numbers: model, weights, pooling, input
            size and eval transform, preprocessing, precision.
        predictor: The Predictor that ran here, as its repr (runtime,
            precision, parity); None on Ray, where each actor has its own.
    """

    out: Path
    images: int
    rows: int
    errors: int
    shards: int
    resumed_shards: int
    dim: int
    seconds: float
    images_per_second: float
    sink: str = "parquet"
    settings: Settings | None = None
    predictor: str | None = None


def extract_features(
    images: str | os.PathLike | Sequence[str | os.PathLike] | Any,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike = "resnet50",
    weights: str | os.PathLike | None = "imagenet",
    pooling: str = "avg",
    size: int | None = None,
    precision: str = "float32",
    runtime: str = "auto",
    calibration: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    batch_size: int = 32,
    shard_size: int | None = None,
    engine: str | None = None,
    ray_options: RayOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
    manifest: Any = None,
    offline: bool | None = None,
) -> ExtractionSummary:
    """Embed many images into sharded Parquet in `out` (resumably), or into one .npz file.

    Every argument is checked before any download, model build or write: a
    refused call leaves nothing behind.

    Args:
        images: One file or folder, or a list of them (a folder is searched
            recursively for image suffixes, sorted, as the command line
            does; a path that does not exist is refused; an unreadable file
            is listed in the errors file, or refused for an .npz), or a
            `ray.data.Dataset` with a string column `path` (gathered on the
            driver in the Dataset's order; implies `engine="ray"`).
        out: A folder for Parquet shards (created if missing; its parent
            must exist), or a file ending in .npz (small runs: one file,
            every image readable).
        model: A registered model name, e.g. "resnet50", or the RUN_DIR of
            a fine-tuned model (`fine_tune`): its backbone embeds.
        weights: A weights tag, an .h5 weights file, or None (random
            weights: such a run cannot be resumed). Not for a RUN_DIR.
        pooling: "avg" or "max".
        size: Input height and width; None for the size of the weights.
        precision: "float32", "bfloat16" or "int8" (with `calibration`).
        runtime: The `Predictor` runtime: "auto" (the fastest installed),
            "openvino", "onnxruntime" or "tensorflow".
        calibration: For int8: image files or folders like the ones to
            embed, at least 32 (the first 300 are used). They are read and
            preprocessed once, here, and sent to every Ray actor.
        batch_size: Images per forward pass (at most 4096).
        shard_size: Images (list positions) per Parquet shard (default
            10,000). Parquet only.
        engine: "local" (tf.data + this process) or "ray" (Ray Data,
            Parquet only); None picks "ray" for a Dataset, else "local".
        ray_options: Where Ray runs: `RayOptions(address=..., actors=...,
            cpus_per_actor=..., gpus_per_actor=...)`. An initialized Ray
            (`ray.init(...)` in the notebook) is used as it is.
        overwrite: Replace features already in `out` instead of refusing
            other settings. Parquet only (an .npz is always replaced).
        progress: Show a progress bar on stderr.
        manifest, offline: As for the builders.

    Returns:
        An `ExtractionSummary`.

    Raises:
        InvalidArgumentError: a bad argument or combination (the table in
            `resnet_keras.extraction.sinks`), or `out` holds features of
            other settings or another image list.
        MissingDependencyError: pyarrow (or Ray for the ray engine) is
            missing; the message names the extra to install.

    Example:
        >>> from resnet_keras.extraction import extract_features
        >>> summary = extract_features(["cat.jpg", "dog.jpg"], "embeddings",
        ...                            model="resnet50")  # doctest: +SKIP
        >>> import pandas; pandas.read_parquet("embeddings")  # doctest: +SKIP
    """
    arguments = {name: value for name, value in locals().items() if name != "progress"}
    return Prepared(plan_job(**arguments), progress).run()


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked extraction; `run()` does it."""

    job: Job
    progress: bool = True

    def run(self) -> ExtractionSummary:
        return run_job(self.job, progress=self.progress)


def prepare(images: Any, out: str | os.PathLike, **options: Any) -> Prepared:
    """Every check of `extract_features(images, out, **options)`, no work: call `.run()` for it."""
    parameters = inspect.signature(extract_features).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise TypeError(f"extract_features() got an unexpected keyword argument {unknown[0]!r}")
    values = {name: options.get(name, p.default) for name, p in parameters.items() if name not in ("images", "out")}
    progress = values.pop("progress")
    return Prepared(plan_job(images, out, **values), progress)


def run_job(job: Job, *, progress: bool) -> ExtractionSummary:
    """The work of a checked extraction: the model built, the images embedded into the sink."""
    from .engines import inference_function, local_batches, ray_batches, ray_session, write_batches
    from .sinks import NpzFile
    from .store import FeatureStore
    from ..images import load_batch, max_image_bytes, preprocess

    settings, plan, source = job.settings, job.plan, job.source
    transform = source.transform(settings.image_size[0])
    # Ray's nodes are checked against the actors before the build.
    with ray_session(job.ray_options) if job.engine == "ray" else contextlib.nullcontext():
        model = source.build(pooling=settings.pooling, size=job.size)
        dim = int(model.output_shape[-1])
        calibration = None
        if job.calibration:  # read once, here: Ray's actors get these pixels
            calibration = preprocess(load_batch(job.calibration, transform), settings.preprocessing)
        infer = None
        if job.engine == "local":  # built (and parity-checked) before anything is written
            infer = inference_function(model, settings.precision, job.runtime, calibration)
        if job.sink.name == "parquet":
            store = FeatureStore.open(job.out, settings, plan, dim=dim, arguments=job.arguments,
                                      overwrite=job.overwrite)
        else:
            store = NpzFile(job.out, settings, plan)
        try:
            pending = store.pending()
            resumed = plan.shard_count - len(pending)
            todo = [plan.positions(k) for k in pending]
            common = dict(transform=transform, preprocessing=settings.preprocessing, max_bytes=max_image_bytes(),
                          batch_size=job.batch_size)
            if job.engine == "ray":
                batches = ray_batches(plan.paths, todo, source=source, pooling=settings.pooling,
                                      weights=model.get_weights(), precision=settings.precision,
                                      runtime=job.runtime, calibration=calibration, options=job.ray_options,
                                      **common)
            else:
                batches = local_batches(plan.paths, [p for r in todo for p in r], infer=infer, dim=dim, **common)
            from tqdm import tqdm

            done_before = sum(len(plan.positions(k)) for k in store.shards)
            clock = _SteadyRate()
            with tqdm(total=len(plan.paths), initial=done_before, unit="img", disable=not progress,
                      desc=f"{settings.model} features", file=sys.stderr) as bar:
                write_batches(store, batches, lambda n: (bar.update(n), clock.update(n)))
            rows, errors = store.totals()
        finally:
            store.close()
    return ExtractionSummary(
        out=job.out, images=len(plan.paths), rows=rows, errors=errors, shards=plan.shard_count,
        resumed_shards=resumed, dim=dim, seconds=clock.seconds, images_per_second=clock.rate,
        sink=job.sink.name, settings=settings, predictor=None if infer is None else repr(infer.predictor),
    )


class _SteadyRate:
    """Images/s after the first batch: its wait holds the pipeline's start and
    the model's first trace, which a long run pays once."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.images = 0
        self.seconds = 0.0

    def update(self, n: int) -> None:
        now = time.perf_counter()
        self.images += n
        self.seconds = now - self.start
        if self.first is None:
            self.first = (now, self.images)

    @property
    def rate(self) -> float:
        if self.first is None:
            return 0.0
        steady_seconds, steady_images = self.seconds - (self.first[0] - self.start), self.images - self.first[1]
        if steady_images and steady_seconds > 0:
            return steady_images / steady_seconds
        return self.images / self.seconds if self.seconds > 0 else 0.0
