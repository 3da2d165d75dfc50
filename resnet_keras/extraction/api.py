"""`extract_features`: the one orchestration of an extraction, and every check before it (see the package docstring).

`prepare(...)` checks everything (`plan_job`, below) and returns a `Prepared`
whose `run()` does the work (`run_job`); `extract_features` is the two in
one call. The command line calls `prepare`, imports Keras quietly, then
`run()`, and prints the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import InvalidArgumentError
from ..inference.precision import check_calibration
from . import DEFAULT_SHARD_SIZE, ENGINES, POOLINGS
from .engines import RayOptions
from .source import Source, open_source
from .store import (
    ENGINE_OPTIONS, FeatureStore, NpzFile, Plan, Settings, Sink, check_options, require_pyarrow, sink_for,
)


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
            `resnet_keras.extraction.store`), or `out` holds features of
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
    from ..images import load_batch, max_image_bytes, preprocess
    from .engines import inference_function, local_batches, ray_batches, ray_session, write_batches

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


# --------------------------------------------------------------------------
# Every argument of an extraction checked before any work.
#
# `plan_job` is the first half of `extract_features` (and of `resnet-keras
# features`). In this order, without Keras, network or writes:
#
# 1. the values: pooling, precision and runtime (the capability tables of
#    `inference.precision`), engine, sizes, types;
# 2. what the sink (`out`) and the engine take (`store.SINKS`), and a
#    calibration set exactly with int8;
# 3. the model and its weights (`source.open_source`), the input size;
# 4. the packages the sink and the engine need;
# 5. the images (for an .npz, every header too) and the calibration images;
# 6. the output: a Parquet folder against its index (no mixing), an .npz
#    file's folder.
#
# It returns a `Job`; `run_job` does the work.

@dataclasses.dataclass(frozen=True)
class Job:
    """An extraction whose every argument is checked: what `run_job` runs."""

    source: Source
    sink: Sink
    out: Path
    plan: Plan
    settings: Settings
    size: int | None  # as asked (None: the weights' own)
    engine: str
    runtime: str
    batch_size: int
    calibration: tuple[Path, ...]
    ray_options: Any
    overwrite: bool
    arguments: dict[str, Any]


def calibration_files(calibration: Any, precision: str) -> tuple[Path, ...]:
    """The calibration images `calibration` names (files or folders), checked with `precision`.

    The first `CALIBRATION_LIMIT`, every header checked; at least `MIN_CALIBRATION`.
    """
    from ..images import collect_images
    from ..inference.precision import CALIBRATION_LIMIT

    check_calibration(precision, calibration is not None)
    if calibration is None:
        return ()
    paths = collect_images(_inputs(calibration, "calibration"))[:CALIBRATION_LIMIT]
    check_calibration(precision, True, len(paths))
    return tuple(paths)


def _inputs(value: Any, name: str) -> list:
    """One file or folder, or a list of them (never a str taken character by character)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        return [os.fsdecode(value)]
    try:
        return [os.fsdecode(p) for p in value]
    except TypeError as error:
        raise InvalidArgumentError(
            f"`{name}` must be a file or folder path, a list of them"
            f"{', or a ray.data.Dataset' if name == 'images' else ''}. Received: {name}={value!r:.200}"
        ) from error


def _positive(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def _check_values(*, pooling, precision, runtime, engine, batch_size, shard_size, size, ray_options,
                  overwrite) -> str:
    """Step 1; returns the runtime `runtime` resolves to."""
    from ..images import max_image_bytes
    from ..inference.precision import choose
    from . import MAX_BATCH_SIZE

    for name, value, choices in (("pooling", pooling, POOLINGS), ("engine", engine, (None, *ENGINES))):
        if value not in choices:
            raise InvalidArgumentError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    chosen = choose(runtime, precision)  # the precision, and the pair, from the capability tables
    _positive("batch_size", batch_size)
    _positive("shard_size", shard_size, optional=True)
    _positive("size", size, optional=True)
    if batch_size > MAX_BATCH_SIZE:
        raise InvalidArgumentError(
            f"`batch_size` must be at most {MAX_BATCH_SIZE} images per forward pass. "
            f"Received: batch_size={batch_size}")
    if ray_options is not None and not isinstance(ray_options, RayOptions):
        raise InvalidArgumentError(f"`ray_options` must be a RayOptions. Received: ray_options={ray_options!r}")
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"`overwrite` must be True or False. Received: overwrite={overwrite!r}")
    max_image_bytes()  # RESNET_KERAS_MAX_IMAGE_BYTES checked now, not in a decoding task
    return chosen.name


def _given(shard_size, overwrite, ray_options) -> dict[str, Any]:
    """The options set away from their defaults (what the capability table is asked about)."""

    given = {name: value for name, value in (("shard_size", shard_size), ("overwrite", overwrite)) if value}
    if ray_options is not None:
        default = RayOptions()
        fields = {n: getattr(ray_options, n) for n in ENGINE_OPTIONS["ray"]
                  if getattr(ray_options, n) != getattr(default, n)}
        given.update(fields or {"ray_options": ray_options})
    return given


def plan_job(images: Any, out: str | os.PathLike, *, model, weights, pooling, size, precision, runtime,
             calibration, batch_size, shard_size, engine, ray_options, overwrite, manifest, offline) -> Job:
    """Every check of an extraction (see the module docstring), in order; the `Job` to run."""
    from .engines import RayOptions, require_ray

    dataset = _ray_dataset(images)
    runtime = _check_values(pooling=pooling, precision=precision, runtime=runtime, engine=engine,
                            batch_size=batch_size, shard_size=shard_size, size=size, ray_options=ray_options,
                            overwrite=overwrite)
    engine = engine or ("ray" if dataset is not None else "local")
    sink = sink_for(out)
    check_options(sink, engine, _given(shard_size, overwrite, ray_options), out)
    if dataset is not None and engine != "ray":
        raise InvalidArgumentError(f"A ray.data.Dataset of images needs engine='ray'. Received: engine={engine!r}")
    check_calibration(precision, calibration is not None)
    source = open_source(model, weights, include_top=False, manifest=manifest, offline=offline)
    source.check_size(size)
    if engine == "ray":
        require_ray()
    if sink.name == "parquet":
        require_pyarrow()
    paths = _dataset_paths(dataset) if dataset is not None else _image_paths(images, check_headers=sink.name == "npz")
    calibration_paths = calibration_files(calibration, precision)
    side = size or source.input_size
    settings = Settings(
        model=source.model, weights=source.weights, weights_hash=source.weights_hash, pooling=pooling,
        image_size=(side, side), preprocessing=source.preprocessing, precision=precision,
        resize_size=source.transform(side).resize, calibration=_files_digest(calibration_paths))
    out = Path(out)
    if sink.name == "parquet":
        plan = Plan(tuple(paths), shard_size or DEFAULT_SHARD_SIZE)
        FeatureStore.check(out, settings, plan, overwrite=overwrite)
    else:
        plan = Plan(tuple(paths), len(paths))  # one piece
        NpzFile.check(out)
    arguments = dict(inputs="ray.data.Dataset" if dataset is not None else _inputs(images, "images"),
                     model=os.fspath(model), weights=source.weights, pooling=pooling, size=size,
                     precision=precision, runtime=runtime, batch_size=batch_size, shard_size=plan.shard_size,
                     engine=engine)
    return Job(source=source, sink=sink, out=out, plan=plan, settings=settings, size=size, engine=engine,
               runtime=runtime, batch_size=batch_size, calibration=calibration_paths,
               ray_options=ray_options or RayOptions(), overwrite=overwrite, arguments=arguments)


def _files_digest(paths: Sequence[Path]) -> str:
    """sha256 over the files' bytes, in order ("none" for no files)."""
    if not paths:
        return "none"
    from ..files import file_sha256

    digest = hashlib.sha256()
    for path in paths:
        digest.update(file_sha256(path).encode("ascii"))
    return f"sha256:{digest.hexdigest()}"


def _image_paths(images: Any, *, check_headers: bool) -> list[str]:
    """The files `images` names (files or folders, as the command line takes them)."""
    from ..images import collect_images, list_images

    listed = (collect_images if check_headers else list_images)(_inputs(images, "images"))
    return [os.fspath(p) for p in listed]


def _ray_dataset(images: Any):
    """`images` if it is a ray.data.Dataset (Ray is only imported if loaded)."""
    data = sys.modules.get("ray.data")
    return images if data is not None and isinstance(images, data.Dataset) else None


def _dataset_paths(dataset: Any) -> list[str]:
    if "path" not in dataset.columns():
        raise InvalidArgumentError(
            "A ray.data.Dataset of images must have a string column `path`. "
            f"Received: columns={dataset.columns()}"
        )
    # A Dataset keeps the context it was made with; its order is kept for
    # this read only (the same order every run), then the option restored.
    options = dataset.context.execution_options
    saved, options.preserve_order = options.preserve_order, True
    try:
        return [str(row["path"]) for row in dataset.select_columns(["path"]).iter_rows()]
    finally:
        options.preserve_order = saved
