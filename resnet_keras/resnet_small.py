"""ResNet-18 and ResNet-34 (He et al. 2015, Table 1) in the torchvision layout.

keras.applications has no ResNet-18/34. These follow torchvision's
`resnet18`/`resnet34`: basic blocks (two 3x3 convs), no conv biases,
BatchNorm epsilon 1e-5, the stride on the first 3x3 conv, a projection
shortcut (1x1 conv + BN) only in the first block of stages conv3..conv5.
11,689,512 and 21,797,672 parameters with the 1000-class head.

No Keras weights exist for them (the shipped manifest lists `resnet18` and
`resnet34` with no tags), so `weights` defaults to None. The layout is kept
one-to-one with torchvision so that a checkpoint can be converted:

| torchvision key                         | Keras layer / weight                      |
|-----------------------------------------|-------------------------------------------|
| `conv1.weight`                          | `conv1_conv` kernel                       |
| `bn1.{weight,bias}`                     | `conv1_bn` gamma, beta                    |
| `bn1.{running_mean,running_var}`        | `conv1_bn` moving_mean, moving_variance   |
| `layer{s}.{b}.conv{k}.weight`           | `conv{s+1}_block{b+1}_{k}_conv` kernel    |
| `layer{s}.{b}.bn{k}.*`                  | `conv{s+1}_block{b+1}_{k}_bn` (as bn1)    |
| `layer{s}.{b}.downsample.0.weight`      | `conv{s+1}_block{b+1}_0_conv` kernel      |
| `layer{s}.{b}.downsample.1.*`           | `conv{s+1}_block{b+1}_0_bn` (as bn1)      |
| `fc.weight`, `fc.bias`                  | `predictions` kernel, bias                |

Conv kernels transpose from torch's (out, in, h, w) to Keras' (h, w, in,
out); the fc weight from (out, in) to (in, out); `num_batches_tracked` has
no counterpart. `torchvision_key` gives this mapping in code. Strided 3x3
convs pad explicitly on all sides (`_1_pad`, as torch does) instead of
keras' bottom/right "same" padding, and the max pool's zero padding equals
torch's -inf padding because its input is a ReLU output, so converted
weights give torchvision's outputs. Such weights expect `preprocess_input`
of this module ("torch" mode: [0, 1], then ImageNet mean and std).
"""

from __future__ import annotations

import re

from . import _imagenet
from .architecture.build import create_model
from ._imagenet import decode_predictions
from .architecture.catalog import builder_names, preprocessing_of, register_model
from .architecture.specs import SPECS
from .errors import InvalidArgumentError

_ABOUT = (
    "Basic blocks (two 3x3 convolutions), post-activation, torchvision "
    "layout (no conv bias, BatchNorm epsilon 1e-5); torchvision's name "
    "mapping is in the `resnet_keras.resnet_small` module docstring."
)


@register_model(SPECS["resnet18"], "ResNet-18", _ABOUT,
                counts=(11_699_112, 11_689_512, 1_814_073_344))
def ResNet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet18",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet18"], **locals())


@register_model(SPECS["resnet34"], "ResNet-34", _ABOUT,
                counts=(21_814_696, 21_797_672, 3_663_761_408))
def ResNet34(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet34",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet34"], **locals())


# The mode of this module's specs (SPECS is its one source).
_MODE = preprocessing_of(__name__)


def preprocess_input(x, data_format=None):
    """Preprocess RGB images in [0, 255] for torchvision-trained weights
    ("torch" mode: scale to [0, 1], minus the ImageNet mean, over its std).

    A NumPy input is returned as a new array instead of being written over.
    """
    return _imagenet.preprocess_input(x, data_format=data_format, mode=_MODE)


_LAYER = re.compile(r"conv(\d+)_block(\d+)_(\d)_(conv|bn)$")
_BN_WEIGHTS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def torchvision_key(layer_name: str, weight_name: str) -> str:
    """The torchvision state-dict key of one weight of ResNet18/34.

    Args:
        layer_name: A weighted layer of the Keras model, e.g.
            `"conv3_block1_0_conv"`.
        weight_name: The weight's name in that layer (`"kernel"`, `"bias"`,
            `"gamma"`, `"beta"`, `"moving_mean"`, `"moving_variance"`).

    Returns:
        E.g. `"layer2.0.downsample.0.weight"`.

    Example:
        >>> from resnet_keras.resnet_small import torchvision_key
        >>> torchvision_key("conv2_block2_1_bn", "moving_variance")
        'layer1.1.bn1.running_var'
    """
    if layer_name == "predictions" and weight_name in ("kernel", "bias"):
        return f"fc.{'weight' if weight_name == 'kernel' else 'bias'}"
    if layer_name == "conv1_conv":
        module = "conv1"
    elif layer_name == "conv1_bn":
        module = "bn1"
    elif match := _LAYER.match(layer_name):
        stage, block, index, kind = match.groups()
        prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
        if index == "0":
            module = f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
        else:
            module = f"{prefix}.{kind}{index}"
    else:
        module = None
    is_bn = layer_name.endswith("_bn")
    weight = _BN_WEIGHTS.get(weight_name) if is_bn else (
        "weight" if weight_name == "kernel" else None
    )
    if module is None or weight is None:
        raise InvalidArgumentError(
            "`layer_name` and `weight_name` must name a weight of ResNet18/34 "
            "(e.g. 'conv2_block1_1_conv', 'kernel'). Received: "
            f"layer_name={layer_name!r}, weight_name={weight_name!r}"
        )
    return f"{module}.{weight}"


# From the registrations above: a new builder is exported by its decorator.
__all__ = [*builder_names(__name__), "preprocess_input", "decode_predictions", "torchvision_key"]
