"""Embeddings of many images into sharded Parquet: streaming, resumable, local or on Ray.

`extract_features(images, out, ...)` (and `resnet-keras features IMAGES --out
FOLDER`) reads the images with a parallel input pipeline, runs a pooled
backbone over them and writes `OUT/part-NNNNN.parquet` shards (columns path,
embedding, model, weights, pooling, image_size) with `OUT/_index.json` and
`OUT/_errors.csv` (see `store.py` for the layout and its crash safety).

- The image list is ordered (files as given, folders sorted) and cut into
  shards of `shard_size` positions. A rerun with the same arguments skips
  the shards the index lists, so after a crash (even `kill -9`) it ends
  with exactly the rows a clean run writes.
- A rerun with another model, weights, pooling, size or precision is
  refused (`InvalidArgumentError` naming what differs).
- Unreadable images are skipped and listed with the reason.
- Pixels are read and preprocessed by the rules of `classify` (see
  `resnet_keras.images`), so the numbers match `features --out x.npz`.
- `engine="ray"` runs the same extraction with Ray Data (decoding in
  tasks, one model per actor) on a local Ray or a cluster (`address`);
  the driver writes the shards, so the output is the same.
- Paths in the output are as given: a folder `photos` gives
  `photos/a/1.jpg`; an absolute folder, absolute paths; names are written
  by the rule of printed names (`resnet_keras._text.printable`).
- `images` may be one file or folder (str or PathLike, searched as the
  CLI searches), a list of files, or a Ray Dataset.
"""

from __future__ import annotations

import importlib

from ..inference.precision import CALIBRATED, PREDICTOR

# Plain constants here, the rest on first use: `resnet-keras --help` reads
# these without loading NumPy or Keras.
ENGINES = ("local", "ray")
POOLINGS = ("avg", "max")
# The Predictor's precisions but int8: an extraction takes no calibration set.
PRECISIONS = tuple(p for p in PREDICTOR if p not in CALIBRATED)
DEFAULT_SHARD_SIZE = 10_000
# Images per forward pass, at most (every command and the library): a batch
# of 4096 224x224 images is 2.4 GB of float32 pixels, held twice while the
# next is decoded; a typo like 10**20 fails in one line, not deep in TensorFlow.
MAX_BATCH_SIZE = 4096

_LAZY = {
    **dict.fromkeys(("ExtractionSummary", "check_run_arguments", "extract_features", "run"), ".api"),
    "RayOptions": ".engines",
    **dict.fromkeys(("ERRORS_NAME", "INDEX_NAME"), ".store"),
}
__all__ = ["ExtractionSummary", "RayOptions", "extract_features"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
