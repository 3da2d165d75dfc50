"""Running models: one package folds, exports, compares and predicts.

- `folding.py`: where each BatchNormalization goes (the folding plan).
- `optimize.py`: `optimize_for_inference`, the folded model in a precision.
- `precision.py`: the one precision definition and the capability tables
  (per runtime, per export format); plain data, read by the command line.
- `parity.py`: `compare`, the tolerance table and the gate that export and
  the Predictor share; `ParityReport`.
- `onnx.py`: the one ONNX path (write, run), for export and onnxruntime.
- `export.py`: `export_for_inference` and the `FORMATS` records.
- `predictor.py`: `Predictor`, a model compiled for the fastest CPU runtime.
- `runtimes.py`: the runtime records and the choice "auto" makes.
- `engines/`: one module per runtime that builds its compiled engine.

Names load on first use (PEP 562): importing `inference.precision` or
`inference.runtimes` loads neither NumPy nor Keras.
"""

import importlib

_LAZY = {
    "optimize_for_inference": ".optimize",
    **dict.fromkeys(("ExportReport", "export_for_inference"), ".export"),
    "ParityReport": ".parity",
    "Predictor": ".predictor",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
