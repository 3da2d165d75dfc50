"""resnet_keras: keras.applications-compatible ResNets, and more.

Swap `from keras.applications import ResNet50` for
`from resnet_keras import ResNet50`; layer names, weight order and outputs
are the same, and the official Keras weight files load as they are.
"""

from . import cifar, errors, resnet, resnet_small, resnet_v2
from ._h5 import load_weights
from ._imagenet import decode_predictions
from .errors import ResNetKerasError
from .resnet import ResNet50, ResNet101, ResNet152
from .resnet_v2 import ResNet50V2, ResNet101V2, ResNet152V2
from .resnet_small import ResNet18, ResNet34
from .cifar import (
    PlainNet20,
    PlainNet32,
    PlainNet44,
    PlainNet56,
    PlainNet110,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
    ResNet1202,
)
from ._features import FeatureInfo, feature_info, feature_model
from ._registry import ModelInfo, get_model, list_models, model_info
from ._inference import optimize_for_inference
from ._export import ExportReport, export_for_inference

__version__ = "0.1.0"

__all__ = [
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNet50V2",
    "ResNet101V2",
    "ResNet152V2",
    "ResNetKerasError",
    "decode_predictions",
    "errors",
    "load_weights",
    "resnet",
    "resnet_v2",
    # beyond keras.applications
    "ResNet18",
    "ResNet34",
    "ResNet20",
    "ResNet32",
    "ResNet44",
    "ResNet56",
    "ResNet110",
    "ResNet1202",
    "PlainNet20",
    "PlainNet32",
    "PlainNet44",
    "PlainNet56",
    "PlainNet110",
    "FeatureInfo",
    "ModelInfo",
    "cifar",
    "feature_info",
    "feature_model",
    "get_model",
    "list_models",
    "model_info",
    "resnet_small",
    "optimize_for_inference",
    "export_for_inference",
    "ExportReport",
]
