"""Transfer learning as one call: `fine_tune(data, model, weights)` -> a trained, evaluated classifier.

- `fine_tune` (api.py): checks every option and the data, decodes the
  images once, builds the zoo model with a new head, trains (head phase,
  then unfreezing), checkpoints every epoch into RUN_DIR, and writes the
  weights, metrics and report.html.
- `load_run` / `FineTuned` (record.py): a finished RUN_DIR back as a model
  and its class names, rebuilt from the registry (no code from files).
- Modules by job: `settings` (options), `data` (folders, arrays,
  datasets, the split), `source` (decoding), `pipeline` (tf.data, the
  seeded augmentation), `optimizer` (groups, per-group learning rates,
  schedules), `train` (the epoch loop), `rundir` (files, checkpoints,
  resume), `model` (build and weights), `metrics`, `report`, `finish`.
"""

from __future__ import annotations

import importlib

_LAZY = {
    **dict.fromkeys(("Prepared", "fine_tune", "prepare"), ".api"),
    **dict.fromkeys(("FineTuned", "load_run"), ".record"),
    **dict.fromkeys(("Augmentation", "Settings"), ".settings"),
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
