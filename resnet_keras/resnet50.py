"""ResNet50 at keras' own path: mirrors `keras.applications.resnet50`.

Tutorials write `from keras.applications.resnet50 import ResNet50,
preprocess_input, decode_predictions`; replacing the package prefix,
`from resnet_keras.resnet50 import ...`, is the whole change. The objects
are those of `resnet_keras.resnet`.
"""

from __future__ import annotations

from .resnet import ResNet50, decode_predictions, preprocess_input

__all__ = ["ResNet50", "preprocess_input", "decode_predictions"]
