"""What every subcommand shares: the parser and `main`, the common options, what
`--manifest` selects, and the model a command names.

`main` parses (configuring only the named command's arguments), runs the
registered command and turns this package's errors (and OS errors) into one
line on stderr, `resnet-keras: error: ...`, with exit status 1; usage errors
exit with 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Sequence

from .output import report
from .registry import COMMANDS, EXIT_FAILURE, EXIT_INTERRUPTED
from ..errors import ResNetKerasError

if TYPE_CHECKING:  # the source loads NumPy: not for --help
    from ..extraction.source import Source


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every registered command; with `command`, only that one's arguments are
    configured (the others keep their name and help, which is all `--help` lists)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="resnet-keras",
        description="keras.applications-compatible ResNets: weights and tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's start-up and device messages (hidden by default)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if command is None or command == cmd.name:
            cmd.configure(sub)
            add_verbose(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (the top-level options take no value)."""
    return next((word for word in argv if not word.startswith("-")), None) if argv else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command_name(argv)
    args = build_parser(name if name in COMMANDS else None).parse_args(argv)
    try:
        return args.run(args)
    except (ResNetKerasError, OSError) as error:
        report(error, args)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("resnet-keras: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def add_manifest_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        metavar="PATH",
        help="a user manifest merged over the shipped one and RESNET_KERAS_MANIFEST",
    )


def active_manifest(args: argparse.Namespace):
    """The manifest that `--manifest` selects: shipped, RESNET_KERAS_MANIFEST, then --manifest."""
    from ..architecture.build import active_manifest  # NumPy: not for --help

    return active_manifest(getattr(args, "manifest", None))


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """--verbose after the command too; SUPPRESS keeps one given before it."""
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow's start-up and device messages")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _number(text: str, *, least: float, strict: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > least if strict else value >= least):  # NaN fails both
        raise argparse.ArgumentTypeError(f"must be a {what} number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, least=0, strict=True, what="positive")


def non_negative_float(text: str) -> float:
    return _number(text, least=0, strict=False, what="non-negative")


def batch_size(text: str) -> int:
    from ..extraction import MAX_BATCH_SIZE  # a plain constant: no NumPy

    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE} images, got {text!r}")
    return value


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    from ..extraction import MAX_BATCH_SIZE

    parser.add_argument(
        "--batch-size", type=batch_size, default=32, metavar="N",
        help=f"images per forward pass (default: 32, at most {MAX_BATCH_SIZE})",
    )


def add_model_options(parser: argparse.ArgumentParser, *, model: bool = True, run_dir: bool = False) -> None:
    """--model (unless the command takes MODEL as a positional; `run_dir`: a fine-tuned
    RUN_DIR too), --weights, --offline, --manifest."""
    if model:
        parser.add_argument(
            "--model", default="resnet50", metavar="MODEL|RUN_DIR" if run_dir else "MODEL",
            help="a registered model (default: resnet50; see `resnet-keras list`)"
            + (", or the RUN_DIR of a fine-tuned model" if run_dir else ""),
        )
        parser.set_defaults(model_flag="--model")  # for messages: the flag that names the model
    parser.add_argument(
        "--weights", metavar="TAG|PATH|none",
        help="a weights tag of the manifest (default: the model's default tag, e.g. imagenet), "
        "a weights file (.h5; torch .pth/.pt or .safetensors for the torchvision-layout models), "
        "or 'none' for random initialization",
    )
    parser.add_argument(
        "--offline", action="store_true",
        help="no network: only weights already in the cache (like RESNET_KERAS_OFFLINE=1)",
    )
    add_manifest_option(parser)


def add_inference_options(parser: argparse.ArgumentParser, *, predictor_by_default: bool = False) -> None:
    """--precision, --runtime, --calibration: run the model through a `Predictor`.

    Left out, they are None: the command runs plain Keras, or a float32
    Predictor where `predictor_by_default` (see `predict_function`).
    """
    from ..inference.precision import BY_RUNTIME, PREDICTOR  # plain data: no Keras, no NumPy

    parser.add_argument(
        "--precision", choices=PREDICTOR,
        help="compute precision through resnet_keras.Predictor (default: float32"
        + ("" if predictor_by_default else " in plain Keras") + "); int8 needs --calibration",
    )
    parser.add_argument(
        "--runtime", choices=("auto", *BY_RUNTIME),
        help="the Predictor's runtime (default with --precision: auto, the fastest installed)",
    )
    parser.add_argument(
        "--calibration", nargs="+", metavar="IMAGE_OR_DIR",
        help="images like the ones to run on, for --precision int8 (at least 32; the first 300 are used)",
    )


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


def import_keras(args: argparse.Namespace):
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
