"""The `resnet-keras` command line (also `python -m resnet_keras`).

The package, by job:

- `registry`: `@command(name, help=..., configure=...)` registers a
  subcommand; a new one (list, info, classify, ...) is one more registered
  function in one of the command modules, and `main` does the rest.
- `weights_commands` (fetch, verify, weights), `model_commands` (list,
  info), `run_commands` (classify, export, and the model they build through
  `resnet_keras.extraction.source`), `finetune_commands` (finetune,
  evaluate; classify --model RUN_DIR).
- `common`: the frame: the parser and `main` (which runs the named
  command), the arguments several take, and `features`, which is the
  library's `extract_features` with flags; `output`:
  tables, escaped file names, one-line errors in the command's words. Image
  files are read and checked by `resnet_keras.images`, which the library
  shares.

Import what the command needs: parsing, `list`, `info` and the checks of
files and arguments use only the standard library, NumPy and the manifest;
Keras and TensorFlow are imported (`common.import_keras`) only to build a
model.
"""

from __future__ import annotations

# Imported for their @command registrations, in the order `--help` lists them.
from . import weights_commands, model_commands, run_commands, finetune_commands  # noqa: F401
from .common import build_parser, main

__all__ = ["build_parser", "main"]
