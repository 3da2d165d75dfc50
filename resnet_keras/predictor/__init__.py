"""Predictor: the fastest CPU inference a Keras ResNet can get, on the runtime installed.

`Predictor(model, precision=..., runtime=...)` folds the model, hands it to
OpenVINO, onnxruntime or TensorFlow, compiles it, checks its outputs against
Keras and then predicts like `model.predict`. `runtimes.py` lists the
runtimes and the order "auto" tries them in; each `engine_*.py` builds one.
"""

from .core import ParityReport, Predictor, PredictorParityError

__all__ = ["ParityReport", "Predictor", "PredictorParityError"]
