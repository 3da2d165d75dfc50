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

from ..images import printable  # the one rule for names, shared with the library


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())


# Library arguments -> the flags that set them, for error messages: the one
# translation of every command (the builders', extract_features', fine_tune's).
FLAGS = {
    "weights": "--weights",
    "input_shape": "--size",
    "input_size": "--size",
    "size": "--size",
    "pooling": "--pooling",
    "manifest": "--manifest",
    "offline": "--offline",
    "top": "--top",
    "precision": "--precision",
    "runtime": "--runtime",
    "calibration": "--calibration",
    "batch_size": "--batch-size",
    "out": "--out",
    "shard_size": "--shard-size",
    "overwrite": "--overwrite",
    "engine": "--engine",
    "address": "--address",
    "actors": "--actors",
    "cpus_per_actor": "--cpus-per-actor",
    "gpus_per_actor": "--gpus-per-actor",
    "ray_options": "--address/--actors/--cpus-per-actor/--gpus-per-actor",
    "src": "SRC",
    "dst": "DST",
    "data": "DATA_DIR",
    "validation_data": "--validation-dir",
    "workers": "--workers",
    "hosts": "--hosts",
    "host_index": "--host-index",
    "heartbeat_timeout": "--heartbeat-timeout",
}
# Phrases said another way on the command line (before the names above are translated).
_API_WORDS = {
    "resnet_keras.list_models()": "`resnet-keras list`",
    "RESNET_KERAS_OFFLINE, offline=": "RESNET_KERAS_OFFLINE, --offline",
    "RESNET_KERAS_MANIFEST or manifest=": "RESNET_KERAS_MANIFEST or --manifest",
    "overwrite=True": "--overwrite",
    "weights=None": "--weights none",
    "calibration=None": "no --calibration",
    "precision='int8'": "--precision int8",
    "engine='ray'": "--engine ray",
    "engine='local'": "--engine local",
    "(`out` a folder)": "(--out FOLDER)",
    "(`out` ending in .npz)": "(--out FILE.npz)",
    "change `out`": "change --out",
}


def flag_words(message: str, args: argparse.Namespace | None) -> str:
    """`message` with Python argument names replaced by the command's flags."""
    model = getattr(args, "model_flag", "MODEL")  # --model, or the MODEL positional
    flags = dict(FLAGS, name=model, model=model, model_name=model)
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
