"""Subcommands register here: `@command(name, help=..., configure=...)`.

`configure(parser)` adds the subcommand's arguments; the decorated
`run(args)` gets the parsed namespace and returns the exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

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
