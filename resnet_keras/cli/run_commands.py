"""Subcommands that run a model: classify, features, export.

Each takes `--model` (MODEL for export) as a registered model or a
fine-tuned RUN_DIR, opened once (`common.open_model`: the library's
`Source`), and checks every file and argument before Keras is imported.
`features` is `resnet_keras.extraction.extract_features` with flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .common import (
    add_batch_size, add_inference_options, add_model_options, build_model, check_inference_options, cli_weights,
    import_keras, non_negative_float, open_model, positive_float, positive_int, predict_function,
)
from .output import printable
from .registry import EXIT_OK, command
from ..architecture.catalog import PREPROCESSING_TEXT
from ..errors import InvalidArgumentError, MissingDependencyError
from ..explain.folder import OverlayWriter, check_folder, image_loader
from ..extraction import DEFAULT_SHARD_SIZE, ENGINES, POOLINGS
from ..inference.export import FORMATS, export_for_inference
from ..inference.precision import EXPORT, formats_for

# --top left out: this many labels, or all of a smaller head's.
DEFAULT_TOP = 5


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _configure_classify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...) or folders")
    add_model_options(parser, run_dir=True)
    parser.add_argument("--top", type=positive_int,
                        help=f"labels per image (default: {DEFAULT_TOP}, or every class of a smaller head)")
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
    from ..images import collect_images, format_top, load_batch, preprocess, top_labels

    source = open_model(args, include_top=True)  # a zoo model or a fine-tuned RUN_DIR, one flow
    if args.top is not None and args.top > source.classes:
        raise InvalidArgumentError(
            f"--top must be at most the number of classes ({source.classes}). Received: --top={args.top}"
        )
    top = args.top or min(DEFAULT_TOP, source.classes)
    paths = collect_images(args.images)  # every file checked before a model is built
    calibration = check_inference_options(args)
    explain_to = check_folder(args.explain) if args.explain else None
    model = build_model(args, source)
    if not source.has_weights:
        print(
            "resnet-keras: warning: --weights none: random weights, the labels mean nothing",
            file=sys.stderr,
        )
    transform, names = source.transform(), source.names()
    predict = predict_function(args, model, source, transform, calibration)
    overlays = None
    if explain_to is not None:
        overlays = OverlayWriter(model, explain_to, paths, top, image_loader(transform, source.preprocessing),
                                 names=names)
    for batch in _batches(paths, args.batch_size):
        scores = predict(preprocess(load_batch(batch, transform), source.preprocessing))
        for path, labels in zip(batch, top_labels(scores, top, names)):
            print(format_top(printable(path), [(printable(label), score) for label, score in labels]))
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
    add_model_options(parser, run_dir=True)
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
    from ..extraction.api import prepare
    from ..extraction.store import ERRORS_NAME

    prepared = prepare(  # every option, the model, the images and --out checked, without Keras
        args.inputs, args.out, model=args.model, weights=cli_weights(args), pooling=args.pooling, size=args.size,
        precision=args.precision or "float32", runtime=args.runtime or "auto", calibration=args.calibration,
        batch_size=args.batch_size, shard_size=args.shard_size, engine=args.engine, ray_options=_ray_options(args),
        overwrite=args.overwrite, progress=not args.quiet, manifest=args.manifest,
        offline=True if args.offline else None)
    import_keras(args)
    summary = prepared.run()
    settings = summary.settings
    if (args.precision or args.runtime) and summary.predictor and not args.quiet:
        print(f"resnet-keras: {summary.predictor}", file=sys.stderr)
    model = f"{settings.model}, {settings.pooling} pooling, weights: {printable(settings.weights)}"
    if summary.sink == "npz":
        size = settings.image_size
        print(f"{summary.rows} images x {summary.dim} features ({model}, {size[0]}x{size[1]} input) -> "
              f"{printable(summary.out)}")
        return EXIT_OK
    resumed = f", {summary.resumed_shards} done before" if summary.resumed_shards else ""
    print(
        f"{summary.images} images -> {summary.rows} rows x {summary.dim} features ({model}, {settings.precision}) "
        f"-> {printable(summary.out)}: {summary.shards} shards{resumed}; {summary.errors} unreadable (listed in "
        f"{ERRORS_NAME}); {summary.images_per_second:.1f} images/s"
    )
    return EXIT_OK


def _ray_options(args: argparse.Namespace):
    """The Ray placement flags given (None when none is: the library names misplaced ones)."""
    from ..extraction.engines import RayOptions

    given = {name: getattr(args, name) for name in ("address", "actors", "cpus_per_actor", "gpus_per_actor")
             if getattr(args, name) is not None}
    return RayOptions(**given) if given else None


# --format name -> the export record (suffix, modules, pip extra, load hint).
EXPORT_FORMATS = {f.cli_name: f for f in FORMATS.values()}


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a registered model, e.g. resnet50, or a fine-tuned RUN_DIR")
    parser.add_argument("--format", required=True, choices=tuple(EXPORT_FORMATS))
    parser.add_argument(
        "--out", required=True, metavar="PATH",
        help="a folder for savedmodel; a .onnx or .tflite file",
    )
    add_model_options(parser, model=False)
    parser.add_argument(
        "--precision", choices=EXPORT, default="float32",
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
    if args.precision not in target.precisions:
        able = [FORMATS[name].cli_name for name in formats_for(args.precision)]
        raise InvalidArgumentError(
            f"--precision must be one of {', '.join(target.precisions)} for --format {args.format} "
            f"(its runtime cannot load the others). Received: --precision={args.precision}. "
            f"Use --format {' or '.join(able)} for {args.precision}, or --precision float32."
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
    source = open_model(args, include_top=args.pooling is None)
    source.check_size(args.size)
    missing = target.missing_modules()
    if missing:
        raise MissingDependencyError(
            f"--format {args.format} needs the Python packages {', '.join(target.modules)}; "
            f"{', '.join(missing)} is not installed. Received: --format={args.format}. "
            f"Install them with `pip install \"resnet-keras[{target.extra}]\"`."
        )
    model = build_model(args, source, pooling=args.pooling, size=args.size)
    report = export_for_inference(model, out, format=target.name, precision=args.precision)
    shape = ", ".join(["batch", *map(str, model.input_shape[1:])])
    print(
        f"exported {source.model} (weights: {printable(source.weights)}) as {args.format} to "
        f"{printable(report.path)}: "
        f"{report.precision}, BatchNorm folded, outputs within {report.max_error:.1e} of Keras"
    )
    print(f"input: float32 ({shape}), preprocessed: {PREPROCESSING_TEXT[source.preprocessing]}")
    print(f"load: {target.load_hint.replace('PATH', repr(os.fspath(report.path)))}")
    return EXIT_OK
