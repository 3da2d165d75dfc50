"""ResNet-18 and ResNet-34 (He et al. 2015, Table 1) in the torchvision layout.

keras.applications has no ResNet-18/34. These follow torchvision's
`resnet18`/`resnet34`: basic blocks (two 3x3 convs), no conv biases,
BatchNorm epsilon 1e-5, the stride on the first 3x3 conv, a projection
shortcut (1x1 conv + BN) only in the first block of stages conv3..conv5,
so their trainable parameters are torchvision's (`model_info` gives them).

No Keras weights exist for them; the shipped manifest lists torchvision's
(`weights="imagenet"` or `"torchvision_imagenet1k_v1"`, a `.pth` file read
with the `torch` extra), so `weights` defaults to None, as in torchvision.
The layout is kept one-to-one with torchvision, so torchvision and timm
checkpoints load as they are (`weights="resnet18.pth"` or a `model.safetensors`; the key
mapping is `torchvision_key`, its table in `resnet_keras.weights.formats.torch_names`).
Strided 3x3 convs pad explicitly on all sides (`_1_pad`, as torch does)
instead of keras' bottom/right "same" padding, and the max pool's zero
padding equals torch's -inf padding because its input is a ReLU output, so
converted weights give torchvision's outputs. Such weights expect
`preprocess_input` of this module ("torch" mode: [0, 1], then ImageNet mean
and std).
"""

from __future__ import annotations

from . import _imagenet
from ._imagenet import decode_predictions
from .architecture.catalog import builder_names, define_builder, preprocessing_of
from .architecture.specs import SPECS
from .weights.formats.torch_names import torchvision_key

_ABOUT = (
    "Basic blocks (two 3x3 convolutions), post-activation, torchvision "
    "layout (no conv bias, BatchNorm epsilon 1e-5); loads torchvision "
    "`.pth` and timm `.safetensors` checkpoints (`torchvision_key` maps the names)."
)


ResNet18 = define_builder("ResNet18", SPECS["resnet18"], "ResNet-18", _ABOUT)
ResNet34 = define_builder("ResNet34", SPECS["resnet34"], "ResNet-34", _ABOUT)


# The mode of this module's specs (SPECS is its one source).
_MODE = preprocessing_of(__name__)


def preprocess_input(x, data_format=None):
    """Preprocess RGB images in [0, 255] for torchvision-trained weights
    ("torch" mode: scale to [0, 1], minus the ImageNet mean, over its std).

    A NumPy input is returned as a new array instead of being written over.
    """
    return _imagenet.preprocess_input(x, data_format=data_format, mode=_MODE)


# From the registrations above: a new builder is exported by its decorator.
__all__ = [*builder_names(__name__), "preprocess_input", "decode_predictions", "torchvision_key"]
