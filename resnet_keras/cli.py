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
import sys
from typing import Callable, Sequence

from .errors import ResNetKerasError

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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells))
    print(f"cache: {folder}  (* = default tag)")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
