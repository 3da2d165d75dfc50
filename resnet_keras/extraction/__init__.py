"""Embeddings of many images: sharded Parquet (streaming, resumable, local or on Ray) or one .npz.

`extract_features(images, out, ...)` (and `resnet-keras features IMAGES --out
FOLDER|FILE.npz`, which calls it) is the one orchestration: every argument
checked first (`api.plan_job`), then the images read with a parallel input
pipeline, a pooled backbone run over them through the Predictor, and the
embeddings written to the sink `out` names (`store.SINKS`: the capability
table of what each sink and engine takes). A folder gets
`OUT/part-NNNNN.parquet` shards (columns path, embedding, model, weights,
pooling, image_size) with `OUT/_index.json` and `OUT/_errors.csv` (see
`store.py` for the layout and its crash safety); a file ending in .npz gets
one array file.

- The image list is ordered (files as given, folders sorted) and cut into
  shards of `shard_size` positions. A rerun with the same arguments skips
  the shards the index lists, so after a crash (even `kill -9`) it ends
  with exactly the rows a clean run writes.
- A rerun with another model, weights, pooling, size, eval transform,
  precision or calibration set is refused (`InvalidArgumentError` naming
  what differs).
- Unreadable images are skipped and listed with the reason (an .npz
  refuses them instead).
- Pixels are read and preprocessed by the rules of `classify` (see
  `resnet_keras.images`: the weights' eval transform), so the numbers match
  `classify`'s and the .npz's.
- `model` is a registered model or a fine-tuned RUN_DIR (`source.py`).
- `engine="ray"` runs the same extraction with Ray Data (decoding in
  tasks, one model per actor) on a local Ray or a cluster (`address`);
  the driver writes the shards, so the output is the same.
- Paths in the output are as given: a folder `photos` gives
  `photos/a/1.jpg`; an absolute folder, absolute paths; names are written
  by the rule of printed names (`resnet_keras.images.printable`).
- `images` may be one file or folder (str or PathLike, searched as the
  CLI searches), a list of them, or a Ray Dataset.
"""

from __future__ import annotations

import importlib

from ..inference.precision import PREDICTOR

# Plain constants here, the rest on first use: `resnet-keras --help` reads
# these without loading NumPy or Keras.
ENGINES = ("local", "ray")
POOLINGS = ("avg", "max")
# Every sink and engine runs the Predictor's precisions (int8 with a calibration set).
PRECISIONS = PREDICTOR
DEFAULT_SHARD_SIZE = 10_000
# Images per forward pass, at most (every command and the library): a batch
# of 4096 224x224 images is 2.4 GB of float32 pixels, held twice while the
# next is decoded; a typo like 10**20 fails in one line, not deep in TensorFlow.
MAX_BATCH_SIZE = 4096

_LAZY = {
    **dict.fromkeys(("ExtractionSummary", "Prepared", "extract_features", "prepare"), ".api"),
    "RayOptions": ".engines",
    **dict.fromkeys(("SINKS", "ENGINE_OPTIONS", "ERRORS_NAME", "INDEX_NAME"), ".store"),
}
__all__ = ["ExtractionSummary", "RayOptions", "extract_features"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
