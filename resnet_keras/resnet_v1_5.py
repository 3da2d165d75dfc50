"""ResNet v1.5: the ResNet-50/101/152 of torchvision and timm.

keras' V1 (`resnet_keras.resnet`, from the original Caffe models) puts a
downsampling block's stride on its first 1x1 convolution; v1.5 puts it on
the 3x3 convolution, which costs a little more compute and gives about
0.5 points more top-1. The rest follows torchvision: no conv biases,
BatchNorm epsilon 1e-5 (torch's default; keras' V1 uses 1.001e-5), and
"torch" preprocessing. 25,557,032 / 44,549,160 / 60,192,808 trainable
parameters with the 1000-class head, as torchvision reports.

Layer names follow keras' scheme (`conv1_conv`, `conv2_block1_1_conv`, ...,
`predictions`); a strided 3x3 conv has an explicit `_2_pad`, so that
torchvision and timm checkpoints (`weights="....pth"` or
`"model.safetensors"`, mapped by `resnet_keras.resnet_small.torchvision_key`)
give torch's outputs.
"""

from __future__ import annotations

from . import _imagenet
from ._imagenet import decode_predictions
from .architecture.catalog import builder_names, define_builder, preprocessing_of
from .architecture.specs import SPECS

_ABOUT = (
    "Bottleneck blocks (1x1, 3x3, 1x1 convolutions), post-activation, "
    "stride on the 3x3 conv (v1.5, torchvision and timm layout: no conv "
    "bias, BatchNorm epsilon 1e-5); loads torchvision `.pth` and timm "
    "`.safetensors` checkpoints."
)


ResNet50V1_5 = define_builder("ResNet50V1_5", SPECS["resnet50_v1_5"], "ResNet-50 v1.5", _ABOUT)
ResNet101V1_5 = define_builder("ResNet101V1_5", SPECS["resnet101_v1_5"], "ResNet-101 v1.5", _ABOUT)
ResNet152V1_5 = define_builder("ResNet152V1_5", SPECS["resnet152_v1_5"], "ResNet-152 v1.5", _ABOUT)


# The mode of this module's specs (SPECS is its one source).
_MODE = preprocessing_of(__name__)


def preprocess_input(x, data_format=None):
    """Preprocess RGB images in [0, 255] for torchvision/timm-trained weights
    ("torch" mode: scale to [0, 1], minus the ImageNet mean, over its std).

    A NumPy input is returned as a new array instead of being written over.
    """
    return _imagenet.preprocess_input(x, data_format=data_format, mode=_MODE)


# From the registrations above: a new builder is exported by its decorator.
__all__ = [*builder_names(__name__), "preprocess_input", "decode_predictions"]
