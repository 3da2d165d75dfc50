"""The command line's frame: the parser and `main`, the options several
subcommands share, what `--manifest` and `--weights` mean, the quiet Keras
import, and `features` (the library's `extract_features` with flags).

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
from typing import Sequence

from .output import printable, report
from .registry import COMMANDS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from ..errors import ResNetKerasError
from ..extraction import DEFAULT_SHARD_SIZE, ENGINES, POOLINGS  # plain constants: no NumPy


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
# Keras imported quietly, and what --weights means to the library.


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


# --------------------------------------------------------------------------
# `features`: `resnet_keras.extraction.extract_features` with flags. It sits
# in the frame, beside `main`, because it is nothing but parse, call, print:
# the library checks every option together and names the API argument, and
# `output.report` turns the argument into its flag. (A command module of its
# own would add a module to every `features` run; issue 20 counts them.)
# `run_commands` registers it, between classify and export.


def configure_features(parser: argparse.ArgumentParser) -> None:
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
