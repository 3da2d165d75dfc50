"""Subcommands that run a model the CLI builds: classify and export.

Each takes `--model` (MODEL for export) as a registered model or a
fine-tuned RUN_DIR, opened once (`open_model`: the library's `Source`), and
checks every file and argument before Keras is imported. (`features` lets
the library build its model: it is `extract_features` with flags, in
`common`.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .common import (
    add_batch_size, add_inference_options, add_model_options, cli_weights, configure_features, import_keras,
    positive_int, run_features,
)
from .output import printable
from .registry import EXIT_OK, command
from ..architecture.catalog import PREPROCESSING_TEXT
from ..errors import InvalidArgumentError, MissingDependencyError
from ..explain.folder import OverlayWriter, check_folder, image_loader
from ..extraction import POOLINGS
from ..inference.export import FORMATS, export_for_inference
from ..inference.precision import EXPORT, formats_for

if TYPE_CHECKING:  # the source loads NumPy: not for --help
    from ..extraction.source import Source

# --top left out: this many labels, or all of a smaller head's.
DEFAULT_TOP = 5


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------
# The model a command asks for: opened first, then built.
#
# `open_model` decides once what `--model` and `--weights` mean (a registered
# model with a tag of the manifest, a local file or none; or a fine-tuned
# RUN_DIR) and returns the library's `Source` record
# (`extraction.source`); it does not import Keras, so a wrong argument is
# reported at once. The command then reads input size, eval transform,
# preprocessing, class names and the weights label from the record, and
# `build_model` imports Keras (TensorFlow's native start-up lines kept off the
# terminal unless `--verbose`) and builds from it.


def open_model(args: argparse.Namespace, *, include_top: bool) -> Source:
    """What `--model`/MODEL and `--weights` name (a zoo model or a fine-tuned RUN_DIR), checked before Keras."""
    from ..extraction.source import open_source

    return open_source(args.model, cli_weights(args), include_top=include_top, manifest=args.manifest,
                       offline=True if args.offline else None)


def build_model(args: argparse.Namespace, source: Source, *, pooling: str | None = None, size: int | None = None):
    """The Keras model of `source` (TensorFlow imported quietly unless `--verbose`)."""
    import_keras(args)
    return source.build(pooling=pooling, size=size)


def check_inference_options(args: argparse.Namespace) -> tuple | None:
    """The calibration image paths, checked with --precision/--runtime before any weights are fetched."""
    if args.precision is None and args.runtime is None and args.calibration is None:
        return None  # Keras runs the model: nothing of a Predictor to check
    from ..extraction.api import calibration_files
    from ..inference.precision import choose

    choose(args.runtime or "auto", args.precision or "float32")  # a Predictor will run: the pair is possible
    return calibration_files(args.calibration, args.precision or "float32") or None


def predict_function(args: argparse.Namespace, model, source: Source, transform, calibration):
    """`x -> outputs` for a preprocessed batch: Keras as built unless `--precision` or
    `--runtime` asks for a `Predictor` (int8 calibrated on the `calibration` files, read with
    `transform`); its runtime and parity line then goes to stderr."""
    if args.precision is None and args.runtime is None:
        return model.predict_on_batch
    from ..extraction.engines import inference_function
    from ..images import load_batch, preprocess

    if calibration is not None:
        calibration = preprocess(load_batch(calibration, transform), source.preprocessing)
    run = inference_function(model, args.precision or "float32", args.runtime or "auto", calibration)
    print(f"resnet-keras: {run.predictor!r}", file=sys.stderr)
    return run


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


# `features`: its handler is in `common` (see there why); registered here, in the order --help lists.
command(
    "features",
    help="pooled embeddings of many images: sharded Parquet (resumable, local or Ray) or one .npz",
    configure=configure_features,
)(run_features)


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
        "--pooling", choices=POOLINGS,
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
