"""What the command line prints: tables, escaped names, one-line errors.

Errors of this package (and OS errors) become one line on stderr,
`resnet-keras: error: ...`. Messages that name a builder argument
(`weights=`, `input_shape=`) are translated to the flag that sets it
(`FLAGS`), and names of files are printed with control and bidi characters
and bytes that are not UTF-8 escaped (`printable`, the rule the library's
outputs share).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from .._text import printable  # the one rule for names, shared with the library


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())


# Builder arguments -> the flags that set them, for error messages.
FLAGS = {
    "weights": "--weights",
    "input_shape": "--size",
    "pooling": "--pooling",
    "manifest": "--manifest",
    "offline": "--offline",
    "top": "--top",
    "precision": "--precision",
    "batch_size": "--batch-size",
    "actors": "--actors",
    "cpus_per_actor": "--cpus-per-actor",
    "gpus_per_actor": "--gpus-per-actor",
}
_API_WORDS = {
    "resnet_keras.list_models()": "`resnet-keras list`",
    "RESNET_KERAS_OFFLINE, offline=": "RESNET_KERAS_OFFLINE, --offline",
    "RESNET_KERAS_MANIFEST or manifest=": "RESNET_KERAS_MANIFEST or --manifest",
}


def flag_words(message: str, args: argparse.Namespace | None) -> str:
    """`message` with Python argument names replaced by the command's flags."""
    # a command may name more of its flags (`args.flags`: argument -> flag)
    flags = dict(FLAGS, **getattr(args, "flags", {}), name=getattr(args, "model_flag", "MODEL"))
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


def report(error: BaseException, args: argparse.Namespace | None = None) -> None:
    """`error` as one line on stderr, in the command's words."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"resnet-keras: error: {printable(flag_words(text, args))}", file=sys.stderr)
