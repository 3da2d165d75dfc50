"""The `resnet-keras` command line (also `python -m resnet_keras`).

The package, by job:

- `registry`: `@command(name, help=..., configure=...)` registers a
  subcommand; a new one (list, info, classify, ...) is one more registered
  function in one of the command modules, and `main` does the rest.
- `weights_commands` (fetch, verify, weights), `model_commands` (list,
  info), `run_commands` (classify, features, export), `finetune_commands`
  (finetune, evaluate; classify --model RUN_DIR).
- `options`: arguments several subcommands share, and the model a command
  asks for (built through `resnet_keras.extraction.source`); `output`:
  tables, escaped file names, one-line errors in the command's words. Image
  files are read and checked by `resnet_keras.images`, which the library
  shares.

Errors of this package (and OS errors) become one line on stderr,
`resnet-keras: error: ...`, and exit status 1; usage errors exit with 2.

Import what the command needs: parsing, `list`, `info` and the checks of
files and arguments use only the standard library, NumPy and the manifest;
Keras and TensorFlow are imported (`options.import_keras`) only to build a
model.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

# Imported for their @command registrations, in the order `--help` lists them.
from . import weights_commands, model_commands, run_commands, finetune_commands  # noqa: F401
from .options import add_verbose
from .output import report
from .registry import COMMANDS, EXIT_FAILURE, EXIT_INTERRUPTED
from ..errors import ResNetKerasError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with `command`, only that one's arguments are configured
    (the others keep their name and help, which is all `--help` lists)."""
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
