"""The model a command asks for: opened first, then built.

`open_model` decides once what `--model` and `--weights` mean (a registered
model with a tag of the manifest, a local file or none; or a fine-tuned
RUN_DIR) and returns the library's `Source` record
(`extraction.source`); it does not import Keras, so a wrong argument is
reported at once. The command then reads input size, eval transform,
preprocessing, class names and the weights label from the record, and
`build_model` imports Keras (TensorFlow's native start-up lines kept off the
terminal unless `--verbose`) and builds from it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the source loads NumPy: not for --help
    from ..extraction.source import Source


@contextlib.contextmanager
def _native_stderr_to_devnull():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines
    (oneDNN, cudart, cuInit, written before absl reads TF_CPP_MIN_LOG_LEVEL)
    go there. Python's own `sys.stderr` is flushed before and after."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to keep clean
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _quiet_tensorflow(args: argparse.Namespace | None):
    """Around imports that may load TensorFlow: unless `--verbose`, its log
    level is 3 (fatal messages only; an explicit TF_CPP_MIN_LOG_LEVEL wins) and the
    lines it writes while loading go to /dev/null."""
    if "keras" in sys.modules or getattr(args, "verbose", False):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_to_devnull():
        yield


def _import_keras(args: argparse.Namespace):
    """Import Keras (and TensorFlow), quietly unless `--verbose`."""
    with _quiet_tensorflow(args):
        import keras
    return keras


def cli_weights(args: argparse.Namespace):
    """`--weights` as the library takes it: left out, the manifest's default tag; "none", None."""
    from ..architecture.build import DEFAULT_TAG

    if args.weights is None:
        return DEFAULT_TAG
    return None if args.weights.lower() == "none" else args.weights


def open_model(args: argparse.Namespace, *, include_top: bool) -> Source:
    """What `--model`/MODEL and `--weights` name (a zoo model or a fine-tuned RUN_DIR), checked before Keras."""
    from ..extraction.source import open_source

    return open_source(args.model, cli_weights(args), include_top=include_top, manifest=args.manifest,
                       offline=True if args.offline else None)


def build_model(args: argparse.Namespace, source: Source, *, pooling: str | None = None, size: int | None = None):
    """The Keras model of `source` (TensorFlow imported quietly unless `--verbose`)."""
    _import_keras(args)
    return source.build(pooling=pooling, size=size)


def check_inference_options(args: argparse.Namespace) -> tuple | None:
    """The calibration image paths, checked with --precision/--runtime before any weights are fetched."""
    if args.precision is None and args.runtime is None and args.calibration is None:
        return None  # Keras runs the model: nothing of a Predictor to check
    from ..extraction.plan import calibration_files
    from ..inference.runtimes import choose

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
