"""The model a command asks for: resolved first, then built.

`resolve_weights` decides once what `--model` and `--weights` mean (a tag of
the manifest, a local file, or none) and returns the `Resolved` record;
it does not import Keras, so a wrong argument is reported at once. The
command then reads input size, preprocessing and the weights label from the
record, and `build_model` imports Keras (TensorFlow's native start-up lines
kept off the terminal unless `--verbose`) and builds from it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .options import active_manifest
from ..architecture import catalog
from ..architecture.specs import SPECS, ResNetSpec
from ..errors import InvalidArgumentError, UnknownWeightsError

if TYPE_CHECKING:  # weights.resolve loads NumPy: not for --help
    from ..weights.resolve import Resolved


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


def model_spec(args: argparse.Namespace) -> ResNetSpec:
    """The spec of `--model`/MODEL; unknown names raise with close matches."""
    return SPECS[catalog.resolve(args.model)]


def fine_tuned_run(args: argparse.Namespace) -> Path | None:
    """The RUN_DIR that `--model` names (a folder, not a registered model name), else None.

    The hook through which `classify --model RUN_DIR` runs a fine-tuned
    classifier (`finetune_commands.classify_run`); `finetune.record.read_run`
    then checks that the folder is a complete run.
    """
    model = getattr(args, "model", None)
    if not isinstance(model, str) or model.lower() in SPECS or not os.path.isdir(model):
        return None
    return Path(model)


def resolve_weights(args: argparse.Namespace, spec: ResNetSpec, *, include_top: bool) -> Resolved:
    """`--weights` for `spec`, decided once and checked before Keras is imported.

    Left out, it is the manifest's default tag; "none" is random initialization.
    """
    from ..weights.resolve import DEFAULT_TAG, resolve

    weights = args.weights
    if weights is None:
        weights = DEFAULT_TAG
    elif weights.lower() == "none":
        weights = None
    offline = True if args.offline else None  # False would override RESNET_KERAS_OFFLINE
    try:
        return resolve(spec, weights, include_top=include_top, manifest=args.manifest, offline=offline)
    except UnknownWeightsError as error:
        if weights is not DEFAULT_TAG or active_manifest(args).tags(spec.name):
            raise
        # The model has no default tag: say what to pass on the command line.
        raise UnknownWeightsError(
            f"--weights needs a value for {spec.name}: it has no pretrained weights in the "
            f"manifest. Received: --model={spec.name}. Pass --weights PATH (an .h5 weights "
            "file) or --weights none (random initialization)."
        ) from error


def build_model(
    args: argparse.Namespace, resolved: Resolved, *, pooling: str | None = None, size: int | None = None
):
    """The Keras model `resolved` describes; without the top, globally pooled."""
    _import_keras(args)
    from ..architecture.build import build, build_pooled

    if resolved.include_top:
        return build(resolved)
    return build_pooled(resolved, pooling=pooling, size=size)


# Calibration images read for --precision int8: enough for stable ranges, bounded memory.
CALIBRATION_LIMIT = 300


def check_inference_options(args: argparse.Namespace) -> list | None:
    """The calibration image paths, checked with --precision/--runtime before any weights are fetched."""
    from ..images import collect_images

    if args.calibration and args.precision != "int8":
        raise InvalidArgumentError(
            "--calibration is used by --precision int8 only. Received: --calibration with "
            f"--precision={args.precision or 'float32'}. Add --precision int8, or drop --calibration."
        )
    if args.precision == "int8" and not args.calibration:
        raise InvalidArgumentError(
            "--precision int8 needs --calibration: a folder or files of at least 32 images like "
            "the ones to run on (their activation ranges set the int8 scales). Received: none"
        )
    return collect_images(args.calibration)[:CALIBRATION_LIMIT] if args.calibration else None


def predict_function(args: argparse.Namespace, model, resolved: Resolved, size: int, calibration,
                     *, keras_by_default: bool = True):
    """`x -> outputs` for a preprocessed batch: a `Predictor` (int8 calibrated on
    `calibration` paths), or Keras as built when `keras_by_default` and neither
    `--precision` nor `--runtime` is given. The Predictor's runtime and parity
    line goes to stderr when the user asked for it (and not with --quiet)."""
    asked = args.precision is not None or args.runtime is not None
    if keras_by_default and not asked:
        return model.predict_on_batch
    from ..extraction.model import inference_function
    from ..images import load_batch, preprocess

    if calibration is not None:
        calibration = preprocess(load_batch(calibration, size), resolved.preprocessing)
    run = inference_function(model, args.precision or "float32", args.runtime or "auto", calibration)
    if asked and not getattr(args, "quiet", False):
        print(f"resnet-keras: {run.predictor!r}", file=sys.stderr)
    return run
