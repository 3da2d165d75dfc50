"""Subcommands that run a model: classify, features, export.

Every file and argument is checked before Keras is imported
(`loading.load_model`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .loading import (
    build_model, check_inference_options, fine_tuned_run, model_spec, predict_function, resolve_weights,
)
from .options import (
    add_batch_size, add_inference_options, add_model_options, non_negative_float, positive_float, positive_int,
)
from .output import printable
from ..files import atomic_write
from .registry import EXIT_OK, command
from ..architecture.catalog import PREPROCESSING_TEXT
from ..errors import InvalidArgumentError, MissingDependencyError
from ..explain.folder import OverlayWriter, check_folder, image_loader
from ..extraction import DEFAULT_SHARD_SIZE, ENGINES, POOLINGS
from ..tools.export import FORMATS, export_for_inference


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _configure_classify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...) or folders")
    add_model_options(parser)
    parser.add_argument("--top", type=positive_int, default=5, help="labels per image (default: 5)")
    add_batch_size(parser)
    add_inference_options(parser)
    parser.add_argument(
        "--explain", metavar="OUT_DIR",
        help="also write a Grad-CAM overlay per image and top-k class to OUT_DIR, named "
        "<stem>.top<k>.<label>.png (the Keras model explained, at the classes printed)",
    )


@command(
    "classify",
    help="top-k labels and scores per image, with the model's preprocessing",
    configure=_configure_classify,
)
def run_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from ..images import collect_images, format_top, load_batch, preprocess, spatial_size, top_labels

    run_dir = fine_tuned_run(args)
    if run_dir is not None:  # --model RUN_DIR: a fine-tuned classifier, its own class names
        from .finetune_commands import classify_run

        return classify_run(args, run_dir)
    spec = model_spec(args)
    if args.top > spec.classes:
        raise InvalidArgumentError(
            f"--top must be at most the number of classes ({spec.classes}). Received: --top={args.top}"
        )
    paths = collect_images(args.images)  # every file checked before a model is built
    calibration = check_inference_options(args)
    explain_to = check_folder(args.explain) if args.explain else None
    resolved = resolve_weights(args, spec, include_top=True)
    model = build_model(args, resolved)
    if not resolved.has_weights:
        print(
            "resnet-keras: warning: --weights none: random weights, the labels mean nothing",
            file=sys.stderr,
        )
    size = spatial_size(model)
    predict = predict_function(args, model, resolved, size, calibration)
    overlays = None
    if explain_to is not None:
        overlays = OverlayWriter(model, explain_to, paths, args.top, image_loader(size, resolved.preprocessing))
    for batch in _batches(paths, args.batch_size):
        scores = predict(preprocess(load_batch(batch, size), resolved.preprocessing))
        for path, labels in zip(batch, top_labels(np.asarray(scores), args.top)):
            print(format_top(printable(path), labels))
        if overlays is not None:
            overlays.write(batch, scores)
    if overlays is not None:
        print(f"{len(overlays.written)} Grad-CAM overlays -> {printable(explain_to)}")
    return EXIT_OK


def _configure_features(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGE_DIR_OR_FILE",
        help="image files, or folders (searched recursively, sorted)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FOLDER|FILE.npz",
        help="a folder of Parquet shards (streamed, resumable), or an .npz file for small runs",
    )
    add_model_options(parser)
    parser.add_argument(
        "--pooling", choices=POOLINGS, default="avg",
        help="global pooling of the last feature map (default: avg)",
    )
    parser.add_argument(
        "--size", type=positive_int, metavar="PIXELS",
        help="input height and width (default: the size of the weights, e.g. 224)",
    )
    add_batch_size(parser)
    add_inference_options(parser, predictor_by_default=True)
    parquet = parser.add_argument_group("Parquet output (--out FOLDER)")
    parquet.add_argument(
        "--shard-size", type=positive_int, metavar="N",
        help=f"images per Parquet shard (default: {DEFAULT_SHARD_SIZE}); a rerun must use the same",
    )
    parquet.add_argument(
        "--overwrite", action="store_true",
        help="replace the features in FOLDER instead of resuming (or refusing other settings)",
    )
    parquet.add_argument(
        "--engine", choices=ENGINES,
        help="local: tf.data and this process; ray: Ray Data, one model per actor (default: local)",
    )
    parquet.add_argument(
        "--address", metavar="RAY_ADDRESS",
        help="with --engine ray: an existing cluster, e.g. ray://head:10001 "
        "(default: RAY_ADDRESS, else a local Ray for the run)",
    )
    parquet.add_argument("--actors", type=positive_int,
                         help="with --engine ray: model replicas (default: 1)")
    parquet.add_argument("--cpus-per-actor", type=positive_float, metavar="N",
                         help="with --engine ray: CPUs Ray reserves per model actor (default: 1)")
    parquet.add_argument("--gpus-per-actor", type=non_negative_float, metavar="N",
                         help="with --engine ray: GPUs per model actor (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@command(
    "features",
    help="pooled embeddings of many images: sharded Parquet (resumable, local or Ray) or one .npz",
    configure=_configure_features,
)
def run_features(args: argparse.Namespace) -> int:
    if Path(args.out).suffix.lower() == ".npz":
        return _features_npz(args)
    return _features_parquet(args)


# Left out (None) unless given, so that a misplaced one can be named.
_RAY_ONLY = ("address", "actors", "cpus_per_actor", "gpus_per_actor")
_PARQUET_ONLY = ("shard_size", "overwrite", "engine", *_RAY_ONLY)


def _given(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) not in (None, False)]


def _features_npz(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..images import collect_images, load_batch, preprocess, spatial_size

    out = Path(args.out)
    if not out.parent.is_dir() or out.is_dir():
        raise InvalidArgumentError(
            "--out must be a file path in an existing folder. Received: "
            f"--out={args.out!r}. Create the folder first."
        )
    extra = _given(args, _PARQUET_ONLY)
    if extra:
        raise InvalidArgumentError(
            f"{', '.join(extra)} only apply to --out FOLDER (Parquet); an .npz is written in one piece. "
            f"Received: --out={args.out!r}. Give a folder instead."
        )
    spec = model_spec(args)
    paths = collect_images(args.inputs)
    calibration = check_inference_options(args)
    resolved = resolve_weights(args, spec, include_top=False)
    model = build_model(args, resolved, pooling=args.pooling, size=args.size)
    size = spatial_size(model)
    predict = predict_function(args, model, resolved, size, calibration, keras_by_default=False)
    chunks = []
    with tqdm(total=len(paths), unit="img", desc=f"{spec.name} features",
              disable=args.quiet, file=sys.stderr) as bar:
        for batch in _batches(paths, args.batch_size):
            chunks.append(np.asarray(predict(preprocess(load_batch(batch, size), resolved.preprocessing)), np.float32))
            bar.update(len(batch))
    features = np.concatenate(chunks)
    # Unicode arrays only: np.load(path, allow_pickle=False) reads every key.
    arrays = dict(
        features=features,
        paths=np.array([printable(p) for p in paths], dtype=str),
        model=np.array(spec.name),
        weights=np.array(resolved.weights_label),
        pooling=np.array(args.pooling),
        image_size=np.array(size),
    )
    with atomic_write(out) as f:
        np.savez(f, **arrays)
    print(
        f"{features.shape[0]} images x {features.shape[1]} features ({spec.name}, "
        f"{args.pooling} pooling, weights: {printable(resolved.weights_label)}, {size[0]}x{size[1]} "
        f"input) -> {printable(out)}"
    )
    return EXIT_OK


def _features_parquet(args: argparse.Namespace) -> int:
    from .. import extraction
    from ..images import list_images

    engine = args.engine or "local"
    shard_size = args.shard_size or DEFAULT_SHARD_SIZE
    if engine != "ray" and _given(args, _RAY_ONLY):
        raise InvalidArgumentError(
            f"{', '.join(_given(args, _RAY_ONLY))} only apply to --engine ray. "
            f"Received: --engine={engine}. Add --engine ray, or leave them out."
        )
    if args.calibration or args.precision == "int8":
        raise InvalidArgumentError(
            "--precision int8 and --calibration apply to --out FILE.npz; Parquet output "
            f"(--out FOLDER) runs float32 or bfloat16. Received: --precision={args.precision} "
            f"--out={args.out!r}. Use --precision bfloat16, or write an .npz."
        )
    precision = args.precision or "float32"
    extraction.check_run_arguments(pooling=args.pooling, precision=precision,
                                   batch_size=args.batch_size, shard_size=shard_size,
                                   engine=engine)
    spec = model_spec(args)
    paths = list_images(args.inputs)  # unreadable files are listed in _errors.csv, not fatal
    resolved = resolve_weights(args, spec, include_top=False)
    arguments = dict(
        command="features", inputs=list(args.inputs), model=spec.name,
        weights=resolved.weights_label, pooling=args.pooling, size=args.size,
        precision=precision, batch_size=args.batch_size, shard_size=shard_size,
        engine=engine,
    )
    summary = extraction.run(
        paths=paths, out=Path(args.out), resolved=resolved,
        make_model=lambda: build_model(args, resolved, pooling=args.pooling, size=args.size),
        pooling=args.pooling, size=args.size, precision=precision, runtime=args.runtime or "auto",
        batch_size=args.batch_size, shard_size=shard_size, engine=engine,
        ray_options=extraction.RayOptions(
            address=args.address, actors=args.actors or 1,
            cpus_per_actor=args.cpus_per_actor or 1, gpus_per_actor=args.gpus_per_actor or 0,
        ),
        overwrite=args.overwrite, arguments=arguments, progress=not args.quiet,
    )
    resumed = f", {summary.resumed_shards} done before" if summary.resumed_shards else ""
    print(
        f"{summary.images} images -> {summary.rows} rows x {summary.dim} features ({spec.name}, {args.pooling} pooling, "
        f"weights: {printable(resolved.weights_label)}, {precision}) -> "
        f"{printable(summary.out)}: {summary.shards} shards{resumed}; "
        f"{summary.errors} unreadable (listed in {extraction.ERRORS_NAME}); "
        f"{summary.images_per_second:.1f} images/s"
    )
    return EXIT_OK


# --format name -> the export record (suffix, modules, pip extra, load hint).
EXPORT_FORMATS = {f.cli_name: f for f in FORMATS.values()}


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a registered model, e.g. resnet50")
    parser.add_argument("--format", required=True, choices=tuple(EXPORT_FORMATS))
    parser.add_argument(
        "--out", required=True, metavar="PATH",
        help="a folder for savedmodel; a .onnx or .tflite file",
    )
    add_model_options(parser, model=False)
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16", "float16"), default="float32",
        help="compute precision of the exported body (see optimize_for_inference; default float32)",
    )
    parser.add_argument(
        "--pooling", choices=("avg", "max"),
        help="export the backbone without the classifier, globally pooled",
    )
    parser.add_argument(
        "--size", type=positive_int, metavar="PIXELS",
        help="with --pooling: input height and width (default: the size of the weights)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PATH")


@command(
    "export",
    help="export for serving (SavedModel, ONNX, TFLite), BatchNorm folded, parity checked",
    configure=_configure_export,
)
def run_export(args: argparse.Namespace) -> int:
    target = EXPORT_FORMATS[args.format]
    out = Path(args.out)
    if target.suffix and out.suffix.lower() != target.suffix:  # m.ONNX is an ONNX file, written as m.ONNX
        raise InvalidArgumentError(
            f"--out must end with {target.suffix} for --format {args.format} (any case). "
            f"Received: --out={args.out!r}"
        )
    if os.path.lexists(out) and not args.overwrite:
        raise InvalidArgumentError(
            f"--out must not exist yet. Received: --out={args.out!r}. "
            "Choose another path, or pass --overwrite."
        )
    if args.size and not args.pooling:
        raise InvalidArgumentError(
            "--size needs --pooling: the classifier fixes the input size. "
            f"Received: --size={args.size}"
        )
    spec = model_spec(args)
    missing = target.missing_modules()
    if missing:
        raise MissingDependencyError(
            f"--format {args.format} needs the Python packages {', '.join(target.modules)}; "
            f"{', '.join(missing)} is not installed. Received: --format={args.format}. "
            f"Install them with `pip install \"resnet-keras[{target.extra}]\"`."
        )
    resolved = resolve_weights(args, spec, include_top=args.pooling is None)
    model = build_model(args, resolved, pooling=args.pooling, size=args.size)
    report = export_for_inference(model, out, format=target.name, precision=args.precision)
    shape = ", ".join(["batch", *map(str, model.input_shape[1:])])
    print(
        f"exported {spec.name} (weights: {printable(resolved.weights_label)}) as {args.format} to "
        f"{printable(report.path)}: "
        f"{report.precision}, BatchNorm folded, outputs within {report.max_error:.1e} of Keras"
    )
    print(f"input: float32 ({shape}), preprocessed: {PREPROCESSING_TEXT[resolved.preprocessing]}")
    print(f"load: {target.load_hint.replace('PATH', repr(os.fspath(report.path)))}")
    return EXIT_OK
