"""Arguments that several subcommands share, and what `--manifest` selects."""

from __future__ import annotations

import argparse


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
    Predictor where `predictor_by_default` (see `loading.predict_function`).
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
