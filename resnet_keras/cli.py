"""The `resnet-keras` command line (also `python -m resnet_keras`).

Each subcommand is a function registered with `@command(name, help=...,
configure=...)`: `configure(parser)` adds its arguments, the function gets
the parsed namespace and returns the exit status. A new subcommand (list,
info, classify, ...) is one more registered function; `main` does the rest.

Errors of this package (and OS errors) become one line on stderr,
`resnet-keras: error: ...`, and exit status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import MissingDependencyError, ResNetKerasError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, configure: Callable | None = None):  # noqa: A002
    """Register the decorated `run(args) -> int` as subcommand `name`."""

    def register(run):
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, configure or (lambda parser: None), run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="resnet-keras",
        description="keras.applications-compatible ResNets: weights and tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ResNetKerasError, OSError) as error:
        print(f"resnet-keras: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("resnet-keras: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# --------------------------------------------------------------------------
# Weights: fetch, verify, weights


def _add_manifest_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        metavar="PATH",
        help="a user manifest merged over the shipped one and RESNET_KERAS_MANIFEST",
    )


def _catalog(args):
    from ._weights import active_manifest

    return active_manifest(args.manifest)


def _configure_fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="e.g. resnet50")
    parser.add_argument("--all", action="store_true", help="every model of the manifest")
    parser.add_argument("--tag", help="weights tag (default: each model's default, e.g. imagenet)")
    heads = parser.add_mutually_exclusive_group()
    heads.add_argument(
        "--top", dest="heads", action="store_const", const=("top",),
        help="the file with the classifier (include_top=True; the default)",
    )
    heads.add_argument(
        "--notop", dest="heads", action="store_const", const=("notop",),
        help="the file without the classifier (include_top=False)",
    )
    heads.add_argument(
        "--both", dest="heads", action="store_const", const=("top", "notop"),
        help="both files",
    )
    parser.add_argument("--force", action="store_true", help="download again even if cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_manifest_option(parser)


@command(
    "fetch",
    help="download weights into the cache and verify them",
    configure=_configure_fetch,
)
def run_fetch(args: argparse.Namespace) -> int:
    from . import _download
    from .errors import InvalidArgumentError, UnknownWeightsError

    catalog = _catalog(args)
    if args.all == bool(args.models):
        raise InvalidArgumentError(
            "fetch needs model names or --all (not both). Received: "
            f"models={args.models}, --all={args.all}. Example: "
            "resnet-keras fetch resnet50 --both"
        )
    models = catalog.models() if args.all else args.models
    requested = args.heads or ("top",)
    jobs = []
    for model in models:
        catalog.check_model(model)
        if args.all and args.tag and not catalog.is_tag(model, args.tag):
            continue
        tag = args.tag or catalog.default_tag(model)
        entry = catalog.entry(model, tag)
        heads = [h for h in requested if h in entry.files]
        if len(heads) < len(requested) and args.heads != ("top", "notop"):
            entry.file(requested[0] == "top")  # raises: this head has no file
        jobs.extend((entry, head) for head in heads)
    if not jobs:
        raise UnknownWeightsError(
            f"No model of the manifest has weights tagged {args.tag!r}. "
            f"Received: --tag={args.tag}"
        )
    failures = 0
    for entry, head in jobs:
        wfile = entry.files[head]
        label = f"{entry.model} weights {entry.tag!r} ({head})"
        try:
            path = _download.fetch(
                wfile, offline=False, progressbar=not args.quiet, force=args.force, label=label
            )
        except (ResNetKerasError, OSError) as error:
            failures += 1
            print(f"resnet-keras: error: {_one_line(error)}", file=sys.stderr)
        else:
            print(f"{label}: {path} ({wfile.hash})")
    return EXIT_FAILURE if failures else EXIT_OK


def _cache_states(args: argparse.Namespace):
    """(cache folder, [(entry, kind, wfile, state)]) for every manifest file."""
    from . import _download

    folder = _download.cache_dir()
    rows = [
        (entry, kind, wfile, _download.cache_state(wfile, folder))
        for entry, kind, wfile in _catalog(args).files()
    ]
    return folder, rows


@command(
    "verify",
    help="re-hash every cached weights file; exit 1 if one is corrupt",
    configure=_add_manifest_option,
)
def run_verify(args: argparse.Namespace) -> int:
    from . import _download

    folder, rows = _cache_states(args)
    counts = {"cached": 0, "corrupt": 0, "not a file": 0}
    seen = set()
    for entry, kind, wfile, state in rows:
        if state == "missing" or wfile.file_name in seen:
            continue
        seen.add(wfile.file_name)
        counts[state] += 1
        word = {"cached": "ok", "corrupt": "CORRUPT", "not a file": "NOT A FILE"}[state]
        print(f"{word:10} {folder / wfile.file_name} ({entry.model} {entry.tag} {kind}, {wfile.hash})")
    stale = _download.stale_temp_files(folder)
    for path in stale:
        print(f"{'STALE':10} {path} (left by an interrupted download; the next fetch removes it)")
    bad = counts["corrupt"] + counts["not a file"]
    print(f"{counts['cached']} verified, {bad} bad, in {folder}")
    if bad:
        print(
            "resnet-keras: error: some cached weights files fail their hash; "
            "run `resnet-keras fetch MODEL` to replace them",
            file=sys.stderr,
        )
    return EXIT_FAILURE if bad else EXIT_OK


@command(
    "weights",
    help="table of the manifest's weights and their cache state",
    configure=_add_manifest_option,
)
def run_weights(args: argparse.Namespace) -> int:
    folder, states = _cache_states(args)
    rows = [("MODEL", "TAG", "HEAD", "PARAMS", "STATE", "FILE")]
    for entry, kind, wfile, state in states:
        tag = entry.tag + ("*" if entry.default else "")
        params = f"{wfile.num_params:,}" if wfile.num_params else "-"
        rows.append((entry.model, tag, kind, params, state, wfile.file_name))
    _print_table(rows)
    print(f"cache: {folder}  (* = default tag)")
    return EXIT_OK



# --------------------------------------------------------------------------
# Models: list, info

_BLOCK_TEXT = {
    "bottleneck": "bottleneck (V1, post-activation)",
    "preact_bottleneck": "pre-activation bottleneck (V2)",
    "basic": "basic (two 3x3 convs)",
    "plain": "plain (basic block without shortcut)",
}


def _format_macs(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern", nargs="?", default="*", metavar="PATTERN",
        help="fnmatch pattern such as 'resnet*v2'; a word without *?[ matches as a "
        "substring, e.g. 'plain' (default: all models)",
    )
    parser.add_argument(
        "--pretrained", action="store_true",
        help="only models with weights in the manifest (shipped + RESNET_KERAS_MANIFEST)",
    )
    parser.add_argument(
        "--counts", action="store_true",
        help="add parameter and multiply-add counts (builds each model: ResNet1202 takes ~20 s)",
    )


@command("list", help="table of the registered models", configure=_configure_list)
def run_list(args: argparse.Namespace) -> int:
    from ._registry import BUILDERS, list_models, model_info
    from ._specs import SPECS
    from ._weights import active_manifest
    from .errors import InvalidArgumentError

    pattern = args.pattern if any(c in args.pattern for c in "*?[") else f"*{args.pattern}*"
    names = list_models(pattern, pretrained=True if args.pretrained else None)
    if not names:
        raise InvalidArgumentError(
            f"PATTERN must match a registered model. Received: PATTERN={args.pattern!r}"
            f"{' with --pretrained' if args.pretrained else ''}. "
            "Run `resnet-keras list` to see them all."
        )
    manifest = active_manifest()
    header = ["MODEL", "BUILDER", "BLOCK", "DEPTHS", "INPUT", "CLASSES", "PREPROCESSING"]
    if args.counts:
        header += ["PARAMS", "MACS"]
    rows = [header + ["WEIGHTS"]]
    for name in names:
        spec = SPECS[name]
        row = [
            name,
            BUILDERS[name].__name__,
            spec.block,
            "-".join(map(str, spec.depths)),
            f"{spec.default_size}x{spec.default_size}",
            str(spec.classes),
            spec.preprocessing or "-",
        ]
        if args.counts:
            info = model_info(name)
            row += [f"{info.params:,}", _format_macs(info.macs)]
        rows.append(row + [", ".join(manifest.tags(name)) or "-"])
    _print_table(rows)
    return EXIT_OK


def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a registered model, e.g. resnet50")


@command(
    "info",
    help="one model: architecture, parameters, MACs, input, preprocessing, weights",
    configure=_configure_info,
)
def run_info(args: argparse.Namespace) -> int:
    from . import _download
    from ._images import PREPROCESSING_TEXT
    from ._registry import model_info
    from ._weights import active_manifest

    info = model_info(args.model)
    spec = info.spec
    size = f"{info.default_size}x{info.default_size}"
    shortcut = {"A": "A (zero-padded identity)", "B": "B (1x1 projection)"}[spec.shortcut]
    rows = [
        ("model", f"{info.name} (resnet_keras.{info.builder.__name__}, from {info.builder.__module__})"),
        ("blocks", f"{_BLOCK_TEXT[spec.block]}, shortcut option {shortcut}"),
        ("stages", f"depths {'-'.join(map(str, spec.depths))}, widths "
                   f"{'-'.join(map(str, spec.widths))}, {spec.num_layers} weighted layers"),
        ("parameters", f"{info.params:,} with the top ({info.trainable_params:,} trainable)"),
        ("MACs", f"{_format_macs(info.macs)} per image at {size}"),
        ("input", f"{size}x3 RGB (any size >= {spec.min_size} without the top)"),
        ("preprocessing", PREPROCESSING_TEXT[info.preprocessing]),
        ("classes", str(info.classes)),
    ]
    catalog = active_manifest()
    folder = _download.cache_dir()
    if not info.weights:
        rows.append(("weights", "none (random initialization only; --weights PATH loads an .h5 file)"))
    for tag in info.weights:
        entry = catalog.entry(info.name, tag)
        metrics = ", ".join(f"{k} {v}" for k, v in entry.metrics.items())
        about = f"{tag}{' (default)' if entry.default else ''}: source {entry.source or '-'}"
        rows.append(("weights", about + (f"; {metrics}" if metrics else "")))
        for kind, wfile in entry.files.items():
            state = _download.cache_state(wfile, folder)
            rows.append(("", f"  {kind:5} {wfile.file_name} ({state})"))
    _print_table(rows)
    return EXIT_OK


# --------------------------------------------------------------------------
# Inference: classify, features, export


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=_positive_int, default=32, help="images per forward pass (default: 32)"
    )


def _add_model_options(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        parser.add_argument(
            "--model", default="resnet50", metavar="MODEL",
            help="a registered model (default: resnet50; see `resnet-keras list`)",
        )
    parser.add_argument(
        "--weights", metavar="TAG|PATH|none",
        help="a weights tag of the manifest (default: the model's default tag, e.g. imagenet), "
        "an .h5 weights file, or 'none' for random initialization",
    )
    parser.add_argument(
        "--offline", action="store_true",
        help="no network: only weights already in the cache (like RESNET_KERAS_OFFLINE=1)",
    )
    _add_manifest_option(parser)


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """A model built for a command, and what its inputs need."""

    model: object  # keras.Model
    key: str
    weights: str  # for messages: a tag, a path or "none"
    preprocessing: str | None


def _model_key(args: argparse.Namespace) -> str:
    from ._registry import _resolve

    return _resolve(args.model)  # unknown names raise with close matches


def _load_model(
    args: argparse.Namespace,
    *,
    include_top: bool,
    pooling: str | None = None,
    size: int | None = None,
) -> _Loaded:
    """Build `args.model` with `args.weights` (a tag, a path or "none")."""
    import keras

    from ._registry import get_model
    from ._specs import SPECS
    from ._validation import default_input_shape
    from ._weights import classify
    from .errors import UnknownWeightsError

    key = _model_key(args)
    spec = SPECS[key]
    offline = True if args.offline else None
    weights = args.weights
    if weights is None:
        catalog = _catalog(args)
        if not catalog.tags(key):
            raise UnknownWeightsError(
                f"--weights needs a value for {key}: it has no pretrained weights in the "
                f"manifest. Received: --model={key}. Pass --weights PATH (an .h5 weights "
                "file) or --weights none (random initialization)."
            )
        weights = catalog.default_tag(key)
    elif weights.lower() == "none":
        weights = None
    source = classify(weights, key, include_top, manifest=args.manifest, offline=offline)
    entry = source.entry
    kwargs = dict(include_top=include_top, weights=weights, manifest=args.manifest, offline=offline)
    if not include_top:
        # A fixed input size, so that images can be batched: the size the
        # weights were trained at unless --size says otherwise.
        side = size or (entry.input_size if entry and entry.input_size else spec.default_size)
        data_format = keras.config.image_data_format()
        kwargs.update(pooling=pooling, input_shape=default_input_shape(side, data_format))
    model = get_model(key, **kwargs)
    mode = (entry.preprocessing or spec.preprocessing) if entry else spec.preprocessing
    return _Loaded(model, key, "none" if weights is None else str(weights), mode)


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _configure_classify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...) or folders")
    _add_model_options(parser)
    parser.add_argument("--top", type=_positive_int, default=5, help="labels per image (default: 5)")
    _add_batch_size(parser)


@command(
    "classify",
    help="top-k labels and scores per image, with the model's preprocessing",
    configure=_configure_classify,
)
def run_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from ._images import collect_images, format_top, load_batch, preprocess, spatial_size, top_labels
    from ._specs import SPECS
    from .errors import InvalidArgumentError

    classes = SPECS[_model_key(args)].classes
    if args.top > classes:
        raise InvalidArgumentError(
            f"--top must be at most the number of classes ({classes}). Received: --top={args.top}"
        )
    paths = collect_images(args.images)  # every file checked before a model is built
    loaded = _load_model(args, include_top=True)
    if loaded.weights == "none":
        print(
            "resnet-keras: warning: --weights none: random weights, the labels mean nothing",
            file=sys.stderr,
        )
    size = spatial_size(loaded.model)
    for batch in _batches(paths, args.batch_size):
        scores = loaded.model.predict_on_batch(preprocess(load_batch(batch, size), loaded.preprocessing))
        for path, labels in zip(batch, top_labels(np.asarray(scores), args.top)):
            print(format_top(path, labels))
    return EXIT_OK


def _configure_features(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGE_DIR_OR_FILE",
        help="image files, or folders (searched recursively, sorted)",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="the .npz file to write")
    _add_model_options(parser)
    parser.add_argument(
        "--pooling", choices=("avg", "max"), default="avg",
        help="global pooling of the last feature map (default: avg)",
    )
    parser.add_argument(
        "--size", type=_positive_int, metavar="PIXELS",
        help="input height and width (default: the size of the weights, e.g. 224)",
    )
    _add_batch_size(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@command(
    "features",
    help="pooled embeddings of many images, saved with their file names in an .npz",
    configure=_configure_features,
)
def run_features(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np
    from tqdm import tqdm

    from ._images import collect_images, load_batch, preprocess, spatial_size
    from .errors import InvalidArgumentError

    out = Path(args.out)
    if not out.parent.is_dir() or out.is_dir():
        raise InvalidArgumentError(
            "--out must be a file path in an existing folder. Received: "
            f"--out={args.out!r}. Create the folder first."
        )
    _model_key(args)
    paths = collect_images(args.inputs)
    loaded = _load_model(args, include_top=False, pooling=args.pooling, size=args.size)
    size = spatial_size(loaded.model)
    chunks = []
    with tqdm(total=len(paths), unit="img", desc=f"{loaded.key} features",
              disable=args.quiet, file=sys.stderr) as bar:
        for batch in _batches(paths, args.batch_size):
            x = preprocess(load_batch(batch, size), loaded.preprocessing)
            chunks.append(np.asarray(loaded.model.predict_on_batch(x), np.float32))
            bar.update(len(batch))
    features = np.concatenate(chunks)
    # Unicode arrays only: np.load(path, allow_pickle=False) reads every key.
    arrays = dict(
        features=features,
        paths=np.array([os.fspath(p) for p in paths], dtype=str),
        model=np.array(loaded.key),
        weights=np.array(loaded.weights),
        pooling=np.array(args.pooling),
        image_size=np.array(size),
    )
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
        os.replace(temp, out)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    print(
        f"{features.shape[0]} images x {features.shape[1]} features ({loaded.key}, "
        f"{args.pooling} pooling, weights: {loaded.weights}, {size[0]}x{size[1]} input) -> {out}"
    )
    return EXIT_OK


# Our format names -> (format= of export_for_inference / keras, modules it
# needs for the export and its parity check, the file suffix).
# CLI format name -> (export_for_inference format, file suffix).
_EXPORT_FORMATS = {
    "savedmodel": ("tf_saved_model", ""),
    "onnx": ("onnx", ".onnx"),
    "tflite": ("litert", ".tflite"),
}
_LOAD_HINT = {
    "savedmodel": "tf.saved_model.load(PATH).serve(x)",
    "onnx": "onnxruntime.InferenceSession(PATH).run(None, {input_name: x})",
    "tflite": "ai_edge_litert.interpreter.Interpreter(model_path=PATH)",
}


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a registered model, e.g. resnet50")
    parser.add_argument("--format", required=True, choices=tuple(_EXPORT_FORMATS))
    parser.add_argument(
        "--out", required=True, metavar="PATH",
        help="a folder for savedmodel; a .onnx or .tflite file",
    )
    _add_model_options(parser, model=False)
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16", "float16"), default="float32",
        help="compute precision of the exported body (see optimize_for_inference; default float32)",
    )
    parser.add_argument(
        "--pooling", choices=("avg", "max"),
        help="export the backbone without the classifier, globally pooled",
    )
    parser.add_argument(
        "--size", type=_positive_int, metavar="PIXELS",
        help="with --pooling: input height and width (default: the size of the weights)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PATH")


@command(
    "export",
    help="export for serving (SavedModel, ONNX, TFLite), BatchNorm folded, parity checked",
    configure=_configure_export,
)
def run_export(args: argparse.Namespace) -> int:
    from . import _export
    from ._export import export_for_inference
    from ._images import PREPROCESSING_TEXT
    from .errors import InvalidArgumentError

    keras_format, suffix = _EXPORT_FORMATS[args.format]
    modules = _export.REQUIRED_MODULES[keras_format]
    missing = _export.missing_modules(keras_format)
    if missing:
        raise MissingDependencyError(
            f"--format {args.format} needs the Python packages {', '.join(modules)}; "
            f"{', '.join(missing)} is not installed. Received: --format={args.format}. "
            f"Install them with `pip install \"resnet-keras[export]\"`."
        )
    out = Path(args.out)
    if suffix and out.suffix.lower() != suffix:
        raise InvalidArgumentError(
            f"--out must end with {suffix} for --format {args.format}. Received: --out={args.out!r}"
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
    loaded = _load_model(
        args, include_top=args.pooling is None, pooling=args.pooling, size=args.size
    )
    report = export_for_inference(
        loaded.model, out, format=keras_format, precision=args.precision
    )
    shape = ", ".join(["batch", *map(str, loaded.model.input_shape[1:])])
    print(
        f"exported {loaded.key} (weights: {loaded.weights}) as {args.format} to {report.path}: "
        f"{report.precision}, BatchNorm folded, outputs within {report.max_error:.1e} of Keras"
    )
    print(f"input: float32 ({shape}), preprocessed: {PREPROCESSING_TEXT[loaded.preprocessing]}")
    print(f"load: {_LOAD_HINT[args.format].replace('PATH', repr(os.fspath(report.path)))}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
