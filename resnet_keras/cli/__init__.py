"""The `resnet-keras` command line (also `python -m resnet_keras`).

Each subcommand is a function registered with `@command(name, help=...,
configure=...)`: `configure(parser)` adds its arguments, the function gets
the parsed namespace and returns the exit status. A new subcommand (list,
info, classify, ...) is one more registered function; `main` does the rest.

Errors of this package (and OS errors) become one line on stderr,
`resnet-keras: error: ...`, and exit status 1; usage errors exit with 2.
Messages that name a builder argument (`weights=`, `input_shape=`) are
translated to the flag that sets it (`_FLAGS`), and names of files are
printed with control and bidi characters escaped (`printable`).

Import what the command needs: parsing, `list`, `info` and the checks of
files and arguments use only the standard library, NumPy and the manifest;
Keras and TensorFlow are imported (`_import_keras`) only to build a model,
with TensorFlow's native start-up lines kept off the terminal unless
`--verbose`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from ..errors import MissingDependencyError, ResNetKerasError

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
        cmd.configure(sub)
        # also after the command; SUPPRESS keeps a --verbose given before it
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="show TensorFlow's start-up and device messages")
        sub.set_defaults(run=cmd.run)
    return parser


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())


def printable(text: str | os.PathLike) -> str:
    """`text` with control, bidi and other invisible characters escaped.

    A file name can hold a newline (which would forge an output line) or a
    right-to-left override; such characters are shown as Python escapes
    (`\\n`, `\\u202e`), everything else as it is.
    """
    text = os.fspath(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Builder arguments -> the flags that set them, for error messages.
_FLAGS = {
    "weights": "--weights",
    "input_shape": "--size",
    "pooling": "--pooling",
    "manifest": "--manifest",
    "offline": "--offline",
    "top": "--top",
    "precision": "--precision",
}
_API_WORDS = {
    "resnet_keras.list_models()": "`resnet-keras list`",
    "RESNET_KERAS_OFFLINE, offline=": "RESNET_KERAS_OFFLINE, --offline",
    "RESNET_KERAS_MANIFEST or manifest=": "RESNET_KERAS_MANIFEST or --manifest",
}


def _flag_words(message: str, args: argparse.Namespace | None) -> str:
    """`message` with Python argument names replaced by the command's flags."""
    flags = dict(_FLAGS, name=getattr(args, "model_flag", "MODEL"))
    for api, cli_words in _API_WORDS.items():
        message = message.replace(api, cli_words)
    names = "|".join(map(re.escape, flags))
    # `weights` -> `--weights`; weights='x' -> --weights='x' (not num_weights=, x.weights=)
    message = re.sub(
        rf"`({names})`",
        lambda m: f"`{flags[m.group(1)]}`" if flags[m.group(1)].startswith("-") else flags[m.group(1)],
        message,
    )
    return re.sub(rf"(?<![\w.-])({names})=", lambda m: f"{flags[m.group(1)]}=", message)


def _one_line(error: BaseException, args: argparse.Namespace | None = None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return printable(_flag_words(text, args))


def _report(error: BaseException, args: argparse.Namespace | None = None) -> None:
    print(f"resnet-keras: error: {_one_line(error, args)}", file=sys.stderr)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ResNetKerasError, OSError) as error:
        _report(error, args)
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


def _active_manifest(args):
    """The active manifest: shipped, RESNET_KERAS_MANIFEST, then --manifest."""
    from ..weights.resolve import active_manifest

    return active_manifest(getattr(args, "manifest", None))


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
    from ..weights import cache
    from ..errors import InvalidArgumentError, UnknownWeightsError

    manifest = _active_manifest(args)
    if args.all == bool(args.models):
        raise InvalidArgumentError(
            "fetch needs model names or --all (not both). Received: "
            f"models={args.models}, --all={args.all}. Example: "
            "resnet-keras fetch resnet50 --both"
        )
    models = manifest.models() if args.all else args.models
    requested = args.heads or ("top",)
    jobs = []
    for model in models:
        manifest.check_model(model)
        if args.all and not (manifest.is_tag(model, args.tag) if args.tag else manifest.tags(model)):
            continue  # --all: only models that have (this tag of) weights
        tag = args.tag or manifest.default_tag(model)
        entry = manifest.entry(model, tag)
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
            path = cache.fetch(
                wfile, offline=False, progressbar=not args.quiet, force=args.force, label=label
            )
        except (ResNetKerasError, OSError) as error:
            failures += 1
            _report(error, args)
        else:
            print(f"{label}: {path} ({wfile.hash})")
    return EXIT_FAILURE if failures else EXIT_OK


def _cache_states(args: argparse.Namespace):
    """(cache folder, [(entry, kind, wfile, state)]) for every manifest file."""
    from ..weights import cache

    folder = cache.cache_dir()
    rows = [
        (entry, kind, wfile, cache.cache_state(wfile, folder))
        for entry, kind, wfile in _active_manifest(args).files()
    ]
    return folder, rows


@command(
    "verify",
    help="re-hash every cached weights file; exit 1 if one is corrupt",
    configure=_add_manifest_option,
)
def run_verify(args: argparse.Namespace) -> int:
    from ..weights import cache

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
    stale = cache.stale_temp_files(folder)
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
        help="add parameter and multiply-add counts (as `info` shows them)",
    )
    _add_manifest_option(parser)


@command("list", help="table of the registered models", configure=_configure_list)
def run_list(args: argparse.Namespace) -> int:
    from ..architecture.catalog import ENTRIES, list_models
    from ..architecture.specs import SPECS
    from ..errors import InvalidArgumentError

    pattern = args.pattern if any(c in args.pattern for c in "*?[") else f"*{args.pattern}*"
    names = list_models(pattern)
    manifest = _active_manifest(args)
    if args.pretrained:  # with --manifest too
        names = [name for name in names if manifest.tags(name)]
    if not names:
        raise InvalidArgumentError(
            f"PATTERN must match a registered model. Received: PATTERN={args.pattern!r}"
            f"{' with --pretrained' if args.pretrained else ''}. "
            "Run `resnet-keras list` to see them all."
        )
    header = ["MODEL", "BUILDER", "BLOCK", "DEPTHS", "INPUT", "CLASSES", "PREPROCESSING"]
    if args.counts:
        header += ["PARAMS", "MACS"]
    rows = [header + ["WEIGHTS"]]
    for name in names:
        spec = SPECS[name]
        row = [
            name,
            ENTRIES[name].builder,
            spec.block,
            "-".join(map(str, spec.depths)),
            f"{spec.default_size}x{spec.default_size}",
            str(spec.classes),
            spec.preprocessing or "-",
        ]
        if args.counts:
            entry = ENTRIES[name]
            row += [f"{entry.params:,}", _format_macs(entry.macs)]
        rows.append(row + [", ".join(manifest.tags(name)) or "-"])
    _print_table(rows)
    return EXIT_OK


def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a registered model, e.g. resnet50")
    _add_manifest_option(parser)


@command(
    "info",
    help="one model: architecture, parameters, MACs, input, preprocessing, weights",
    configure=_configure_info,
)
def run_info(args: argparse.Namespace) -> int:
    from ..architecture.catalog import ENTRIES, PREPROCESSING_TEXT, resolve
    from ..architecture.specs import SPECS

    key = resolve(args.model)
    spec, listed = SPECS[key], ENTRIES[key]  # _registry checks that every model is listed
    size = f"{spec.default_size}x{spec.default_size}"
    shortcut = {"A": "A (zero-padded identity)", "B": "B (1x1 projection)"}[spec.shortcut]
    rows = [
        ("model", f"{key} (resnet_keras.{listed.builder}, from resnet_keras.{listed.module})"),
        ("blocks", f"{_BLOCK_TEXT[spec.block]}, shortcut option {shortcut}"),
        ("stages", f"depths {'-'.join(map(str, spec.depths))}, widths "
                   f"{'-'.join(map(str, spec.widths))}, {spec.num_layers} weighted layers"),
        ("parameters", f"{listed.params:,} with the top ({listed.trainable_params:,} trainable)"),
        ("MACs", f"{_format_macs(listed.macs)} per image at {size}"),
        ("input", f"{size}x3 RGB (any size >= {spec.min_size} without the top)"),
        ("preprocessing", PREPROCESSING_TEXT[spec.preprocessing]),
        ("classes", str(spec.classes)),
    ]
    from ..weights import cache

    manifest = _active_manifest(args)
    folder = cache.cache_dir()
    tags = manifest.tags(key)
    if not tags:
        rows.append(("weights", "none (random initialization only; --weights PATH loads an .h5 file)"))
    for tag in tags:
        entry = manifest.entry(key, tag)
        metrics = ", ".join(f"{k} {v}" for k, v in entry.metrics.items())
        about = f"{tag}{' (default)' if entry.default else ''}: source {entry.source or '-'}"
        rows.append(("weights", about + (f"; {metrics}" if metrics else "")))
        for kind, wfile in entry.files.items():
            state = cache.cache_state(wfile, folder)
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
        parser.set_defaults(model_flag="--model")  # for messages: the flag that names the model
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
    from ..architecture.catalog import resolve

    return resolve(args.model)  # unknown names raise with close matches


def _load_model(
    args: argparse.Namespace,
    *,
    include_top: bool,
    pooling: str | None = None,
    size: int | None = None,
) -> _Loaded:
    """Build `args.model` with `args.weights` (a tag, a path or "none").

    `weights` is checked (a tag of the manifest, or an existing file) before
    Keras is imported.
    """
    from ..architecture.specs import SPECS
    from ..weights.resolve import classify
    from ..errors import UnknownWeightsError

    key = _model_key(args)
    spec = SPECS[key]
    offline = True if args.offline else None
    weights = args.weights
    if weights is None:
        manifest = _active_manifest(args)
        if not manifest.tags(key):
            raise UnknownWeightsError(
                f"--weights needs a value for {key}: it has no pretrained weights in the "
                f"manifest. Received: --model={key}. Pass --weights PATH (an .h5 weights "
                "file) or --weights none (random initialization)."
            )
        weights = manifest.default_tag(key)
    elif weights.lower() == "none":
        weights = None
    source = classify(weights, key, include_top, manifest=args.manifest, offline=offline)
    entry = source.entry
    keras = _import_keras(args)
    from ..architecture.registry import get_model
    from ..architecture.validation import default_input_shape

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

    from .images import collect_images, format_top, load_batch, preprocess, spatial_size, top_labels
    from ..architecture.specs import SPECS
    from ..errors import InvalidArgumentError

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
            print(format_top(printable(path), labels))
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
    import numpy as np
    from tqdm import tqdm

    from .images import collect_images, load_batch, preprocess, spatial_size
    from ..errors import InvalidArgumentError

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
    with _atomic_output(out) as f:
        np.savez(f, **arrays)
    print(
        f"{features.shape[0]} images x {features.shape[1]} features ({loaded.key}, "
        f"{args.pooling} pooling, weights: {printable(loaded.weights)}, {size[0]}x{size[1]} "
        f"input) -> {printable(out)}"
    )
    return EXIT_OK


@contextlib.contextmanager
def _atomic_output(path: Path):
    """A binary file that appears at `path` complete or not at all.

    Written to a temp file beside `path`, then renamed over it; its mode is
    what `open()` would give (0o666 less the umask), not mkstemp's 0o600.
    """
    import tempfile

    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


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
    from ..architecture.catalog import PREPROCESSING_TEXT
    from ..errors import InvalidArgumentError

    keras_format, suffix = _EXPORT_FORMATS[args.format]
    out = Path(args.out)
    if suffix and out.suffix.lower() != suffix:  # m.ONNX is an ONNX file, written as m.ONNX
        raise InvalidArgumentError(
            f"--out must end with {suffix} for --format {args.format} (any case). "
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
    _model_key(args)
    _import_keras(args)
    from ..tools import export

    modules = export.REQUIRED_MODULES[keras_format]
    missing = export.missing_modules(keras_format)
    if missing:
        raise MissingDependencyError(
            f"--format {args.format} needs the Python packages {', '.join(modules)}; "
            f"{', '.join(missing)} is not installed. Received: --format={args.format}. "
            f"Install them with `pip install \"resnet-keras[export]\"`."
        )
    loaded = _load_model(
        args, include_top=args.pooling is None, pooling=args.pooling, size=args.size
    )
    report = export.export_for_inference(
        loaded.model, out, format=keras_format, precision=args.precision
    )
    shape = ", ".join(["batch", *map(str, loaded.model.input_shape[1:])])
    print(
        f"exported {loaded.key} (weights: {printable(loaded.weights)}) as {args.format} to "
        f"{printable(report.path)}: "
        f"{report.precision}, BatchNorm folded, outputs within {report.max_error:.1e} of Keras"
    )
    print(f"input: float32 ({shape}), preprocessed: {PREPROCESSING_TEXT[loaded.preprocessing]}")
    print(f"load: {_LOAD_HINT[args.format].replace('PATH', repr(os.fspath(report.path)))}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
