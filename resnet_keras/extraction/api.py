"""`extract_features` and the run the CLI shares with it (see the package docstring)."""


from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import DEFAULT_SHARD_SIZE, ENGINES, MAX_BATCH_SIZE, POOLINGS, PRECISIONS
from .engines import RayOptions, local_batches, ray_batches, ray_session, require_ray, write_batches
from .model import settings_for
from .store import FeatureStore, Plan, require_pyarrow
from ..errors import InvalidArgumentError
from ..images import list_images, max_image_bytes


@dataclasses.dataclass(frozen=True)
class ExtractionSummary:
    """What a run did.

    Attributes:
        out: The output folder.
        images: Images in the list.
        rows: Rows in the output (readable images).
        errors: Unreadable images (listed in `out/_errors.csv`).
        shards: Shards in the output.
        resumed_shards: Shards a previous run had finished (skipped now).
        dim: Values per embedding.
        seconds: Time spent reading and embedding in this run.
        images_per_second: Images per second this run processed after its
            first batch (which holds the pipeline's start and the first trace).
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


def check_run_arguments(*, pooling: str, precision: str, batch_size: int, shard_size: int,
                        engine: str, size: int | None = None) -> None:
    """Every argument rule of an extraction, before any file or model is touched."""
    for name, value, choices in (("pooling", pooling, POOLINGS), ("precision", precision, PRECISIONS),
                                 ("engine", engine, ENGINES)):
        if value not in choices:
            raise InvalidArgumentError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size), ("size", size or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if batch_size > MAX_BATCH_SIZE:
        raise InvalidArgumentError(
            f"`batch_size` must be at most {MAX_BATCH_SIZE} images per forward pass. "
            f"Received: batch_size={batch_size}"
        )
    max_image_bytes()  # RESNET_KERAS_MAX_IMAGE_BYTES checked now, not in a decoding task
    if engine == "ray":
        require_ray()
    require_pyarrow()


def run(*, paths: Sequence[str], out: Path, resolved: Any, make_model: Callable[[], Any],
        pooling: str, size: int | None, precision: str, batch_size: int, shard_size: int,
        engine: str, ray_options: RayOptions, overwrite: bool, arguments: dict[str, Any],
        progress: bool, runtime: str = "auto") -> ExtractionSummary:
    """The extraction both the CLI and `extract_features` run (arguments already checked)."""
    settings = settings_for(resolved, pooling=pooling, size=size, precision=precision)
    plan = Plan(tuple(os.fsdecode(p) for p in paths), shard_size)
    FeatureStore.check(out, settings, plan, overwrite=overwrite)  # before the slow build
    # Ray's nodes are checked against the actors before the build, too.
    with ray_session(ray_options) if engine == "ray" else contextlib.nullcontext():
        model = make_model()
        dim = int(model.output_shape[-1])
        store = FeatureStore.open(out, settings, plan, dim=dim, arguments=arguments, overwrite=overwrite)
        try:
            pending = store.pending()
            resumed = plan.shard_count - len(pending)
            side, todo = settings.image_size[0], [plan.positions(k) for k in pending]
            common = dict(side=side, preprocessing=settings.preprocessing, max_bytes=max_image_bytes(),
                          batch_size=batch_size, model=model, precision=precision, runtime=runtime)
            if engine == "ray":
                batches = ray_batches(plan.paths, todo, resolved=resolved, pooling=pooling,
                                      options=ray_options, **common)
            else:
                batches = local_batches(plan.paths, [p for r in todo for p in r], **common)
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
        out=out, images=len(plan.paths), rows=rows, errors=errors, shards=plan.shard_count,
        resumed_shards=resumed, dim=dim, seconds=clock.seconds, images_per_second=clock.rate,
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


def extract_features(
    images: str | os.PathLike | Sequence[str | os.PathLike] | Any,
    out: str | os.PathLike,
    *,
    model: str = "resnet50",
    weights: str | os.PathLike | None = "imagenet",
    pooling: str = "avg",
    size: int | None = None,
    precision: str = "float32",
    runtime: str = "auto",
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    engine: str | None = None,
    ray_options: RayOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
    manifest: Any = None,
    offline: bool | None = None,
) -> ExtractionSummary:
    """Embed many images into sharded Parquet in `out`, resumably.

    Args:
        images: One file or folder (a folder is searched recursively for
            image suffixes, sorted, as the command line does), a list of
            image file paths (their order fixes the shards; a missing or
            unreadable one is listed in the errors file), or a
            `ray.data.Dataset` with a string column `path` (gathered on the
            driver in the Dataset's order; implies `engine="ray"`).
        out: Output folder (created if missing; its parent must exist).
        model: A registered model name, e.g. "resnet50".
        weights: A weights tag, an .h5 weights file, or None (random
            weights: such a run cannot be resumed).
        pooling: "avg" or "max".
        size: Input height and width; None for the size of the weights.
        precision: "float32" or "bfloat16".
        runtime: The `Predictor` runtime: "auto" (the fastest installed),
            "openvino", "onnxruntime" or "tensorflow".
        batch_size: Images per forward pass (at most 4096).
        shard_size: Images (list positions) per Parquet shard.
        engine: "local" (tf.data + this process) or "ray" (Ray Data);
            None picks "ray" for a Dataset, else "local".
        ray_options: Where Ray runs: `RayOptions(address=..., actors=...,
            cpus_per_actor=..., gpus_per_actor=...)`. An initialized Ray
            (`ray.init(...)` in the notebook) is used as it is.
        overwrite: Replace features already in `out` instead of refusing
            other settings.
        progress: Show a progress bar on stderr.
        manifest, offline: As for the builders.

    Returns:
        An `ExtractionSummary`.

    Raises:
        InvalidArgumentError: a bad argument, or `out` holds features of
            other settings or another image list.
        MissingDependencyError: pyarrow (or Ray for the ray engine) is
            missing; the message names the extra to install.

    Example:
        >>> from resnet_keras.extraction import extract_features
        >>> summary = extract_features(["cat.jpg", "dog.jpg"], "embeddings",
        ...                            model="resnet50")  # doctest: +SKIP
        >>> import pandas; pandas.read_parquet("embeddings")  # doctest: +SKIP
    """
    from ..architecture import catalog
    from ..architecture.specs import SPECS
    from ..architecture.resolve import resolve

    dataset = _ray_dataset(images)
    engine = engine or ("ray" if dataset is not None else "local")
    check_run_arguments(pooling=pooling, precision=precision, batch_size=batch_size,
                        shard_size=shard_size, engine=engine, size=size)
    from ..inference.runtimes import choose

    choose(runtime, precision)  # a typed error now, not in a Ray actor later
    if dataset is not None and engine != "ray":
        raise InvalidArgumentError(
            f"A ray.data.Dataset of images needs engine='ray'. Received: engine={engine!r}"
        )
    paths = _dataset_paths(dataset) if dataset is not None else _image_paths(images)
    if not paths:
        raise InvalidArgumentError("`images` must name at least one image. Received: images=[]")
    resolved = resolve(SPECS[catalog.resolve(model)], None if weights is None else os.fspath(weights),
                       include_top=False, manifest=manifest, offline=offline)

    def make_model():
        from ..architecture.build import build_pooled

        return build_pooled(resolved, pooling=pooling, size=size)

    arguments = dict(api="extract_features", model=model, weights=resolved.weights_label,
                     pooling=pooling, size=size, precision=precision, batch_size=batch_size,
                     shard_size=shard_size, engine=engine)
    return run(paths=paths, out=Path(out), resolved=resolved, make_model=make_model,
               pooling=pooling, size=size, precision=precision, batch_size=batch_size,
               shard_size=shard_size, engine=engine, ray_options=ray_options or RayOptions(),
               overwrite=overwrite, arguments=arguments, progress=progress, runtime=runtime)


def _image_paths(images: Any) -> list[str]:
    """The paths `images` names: one file or folder (expanded), or a list of files."""
    if isinstance(images, (str, bytes, os.PathLike)):  # never iterated character by character
        return [os.fspath(p) for p in list_images([os.fsdecode(images)])]
    try:
        return [os.fsdecode(p) for p in images]
    except TypeError as error:
        raise InvalidArgumentError(
            "`images` must be a file or folder path, a list of image paths or a ray.data.Dataset. "
            f"Received: images={images!r:.200}"
        ) from error


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
