"""Weights subcommands: fetch, verify, weights (keras-free), and weights convert.

`weights convert SRC DST --model NAME` is `resnet_keras.convert_checkpoint`
with flags: a torch checkpoint (torchvision's .pth or .pt, timm's
.safetensors) written once as an HDF5 weights file, which loads without
torch; it builds the model, so it imports Keras (after its checks).
"""

from __future__ import annotations

import argparse
import sys

from .common import active_manifest, add_manifest_option, add_verbose
from .output import print_table, report
from .registry import EXIT_FAILURE, EXIT_OK, command
from ..errors import InvalidArgumentError, ResNetKerasError, UnknownWeightsError


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
    add_manifest_option(parser)


@command(
    "fetch",
    help="download weights into the cache and verify them",
    configure=_configure_fetch,
)
def run_fetch(args: argparse.Namespace) -> int:
    from ..weights.download import cache

    manifest = active_manifest(args)
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
            report(error, args)
        else:
            print(f"{label}: {path} ({wfile.hash})")
    return EXIT_FAILURE if failures else EXIT_OK


def _cache_states(args: argparse.Namespace):
    """(cache folder, [(entry, kind, wfile, state)]) for every manifest file."""
    from ..weights.download import cache

    folder = cache.cache_dir()
    rows = [
        (entry, kind, wfile, cache.cache_state(wfile, folder))
        for entry, kind, wfile in active_manifest(args).files()
    ]
    return folder, rows


@command(
    "verify",
    help="re-hash every cached weights file; exit 1 if one is corrupt",
    configure=add_manifest_option,
)
def run_verify(args: argparse.Namespace) -> int:
    from ..weights.download import cache

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


def _configure_weights(parser: argparse.ArgumentParser) -> None:
    add_manifest_option(parser)
    actions = parser.add_subparsers(dest="weights_command", metavar="convert", title="weights commands",
                                    help="instead of the table: write a torch checkpoint as an HDF5 file (below)")
    convert = actions.add_parser(
        "convert", help="write a torch checkpoint (.pth, .pt, .safetensors) as an HDF5 weights file, once",
        description="Write a torch checkpoint (torchvision .pth or .pt, timm .safetensors) as an HDF5 "
        "weights file that loads without torch (resnet_keras.convert_checkpoint).")
    convert.add_argument("src", metavar="SRC", help="the checkpoint: a .pth or .pt state dict, or .safetensors")
    convert.add_argument("dst", metavar="DST", help="the .h5 file to write")
    convert.add_argument("--model", required=True, metavar="MODEL",
                         help="a model in torchvision's layout: resnet18, resnet34, resnet50_v1_5, ...")
    convert.add_argument("--notop", action="store_true", help="leave out the classifier (fc)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    convert.set_defaults(model_flag="--model")
    add_verbose(convert)


@command(
    "weights",
    help="table of the manifest's weights and their cache state; `weights convert` for torch checkpoints",
    configure=_configure_weights,
)
def run_weights(args: argparse.Namespace) -> int:
    if args.weights_command == "convert":
        return _run_convert(args)
    folder, states = _cache_states(args)
    rows = [("MODEL", "TAG", "HEAD", "PARAMS", "STATE", "FILE")]
    for entry, kind, wfile, state in states:
        tag = entry.tag + ("*" if entry.default else "")
        params = f"{wfile.num_params:,}" if wfile.num_params else "-"
        rows.append((entry.model, tag, kind, params, state, wfile.file_name))
    print_table(rows)
    print(f"cache: {folder}  (* = default tag)")
    return EXIT_OK


def _run_convert(args: argparse.Namespace) -> int:
    from .common import import_keras
    from .output import printable
    from ..architecture.convert import check_conversion, convert_checkpoint

    include_top = not args.notop
    check_conversion(args.src, args.dst, args.model, include_top=include_top, overwrite=args.overwrite)
    import_keras(args)
    done = convert_checkpoint(args.src, args.dst, args.model, include_top=include_top, overwrite=args.overwrite)
    print(f"{printable(done.path)}: sha256:{done.sha256}, {done.size:,} bytes ({done.model}, "
          f"{'top' if done.include_top else 'notop'})")
    return EXIT_OK
