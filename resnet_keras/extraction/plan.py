"""Every argument of an extraction checked before any work.

`plan_job` is the first half of `extract_features` (and of `resnet-keras
features`). In this order, without Keras, network or writes:

1. the values: pooling, precision and runtime (the capability tables of
   `inference.precision`), engine, sizes, types;
2. what the sink (`out`) and the engine take (`sinks.SINKS`), and a
   calibration set exactly with int8;
3. the model and its weights (`source.open_source`), the input size;
4. the packages the sink and the engine need;
5. the images (for an .npz, every header too) and the calibration images;
6. the output: a Parquet folder against its index (no mixing), an .npz
   file's folder.

It returns a `Job`; `api.run_job` does the work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from . import DEFAULT_SHARD_SIZE, ENGINES, POOLINGS
from .records import Plan, Settings
from .sinks import ENGINE_OPTIONS, Sink, check_options, sink_for
from .source import Source, open_source
from ..errors import InvalidArgumentError
from ..inference.precision import check_calibration


@dataclasses.dataclass(frozen=True)
class Job:
    """An extraction whose every argument is checked: what `api.run_job` runs."""

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
    from . import MAX_BATCH_SIZE
    from .engines import RayOptions
    from ..images import max_image_bytes
    from ..inference.runtimes import choose

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
    from .engines import RayOptions

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
    from .store import FeatureStore, require_pyarrow
    from .sinks import NpzFile

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
