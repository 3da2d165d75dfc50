"""Running models: one package folds, exports, compares and predicts.

- `precision.py`: the one precision definition, the capability tables (per
  runtime, per export format), the runtime records and the choice "auto"
  makes, and parity (`compare`, the tolerance table and the gate that export
  and the Predictor share; `ParityReport`); plain data, read by the command line.
- `optimize.py`: `optimize_for_inference`, the folded model in a precision,
  and the folding plan (where each BatchNormalization goes).
- `onnx.py`: the one ONNX path (write, run), for export and onnxruntime.
- `export.py`: `export_for_inference` and the `FORMATS` records.
- `predictor.py`: `Predictor`, a model compiled for the fastest CPU runtime;
  the `Engine` record and the TensorFlow engine.
- `engines/`: the peer runtimes' engines (OpenVINO, onnxruntime).

Names load on first use (PEP 562): importing `inference.precision` loads
neither NumPy nor Keras.
"""

import importlib

_LAZY = {
    "optimize_for_inference": ".optimize",
    **dict.fromkeys(("ExportReport", "export_for_inference"), ".export"),
    "ParityReport": ".precision",
    "Predictor": ".predictor",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
