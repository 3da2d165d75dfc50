"""The CIFAR-10 ResNets and plain nets of He et al. 2015, section 4.2.

6n+2 weighted layers: a 3x3 conv with 16 filters, three stages of n basic
blocks with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps, global
average pooling and a 10-way dense layer. Shortcut option A (identity,
stride-2 subsampling and zero-padded channels where the shape changes: no
parameters) is the default, as in the paper; `shortcut="B"` projects with
a 1x1 conv + BN instead. The plain nets are the same without shortcuts
(the paper's Figure 6: plain-56 trains worse than plain-20, ResNet-56
better than ResNet-20).

| model      | n   | paper params | paper test error |
|------------|-----|--------------|------------------|
| ResNet20   | 3   | 0.27M        | 8.75 %           |
| ResNet32   | 5   | 0.46M        | 7.51 %           |
| ResNet44   | 7   | 0.66M        | 7.17 %           |
| ResNet56   | 9   | 0.85M        | 6.97 %           |
| ResNet110  | 18  | 1.7M         | 6.43 %           |
| ResNet1202 | 200 | 19.4M        | 7.93 %           |

Convolutions have no bias and BatchNorm uses epsilon 1e-5 (torch
defaults). No pretrained weights ship: `weights` defaults to None. The
paper normalizes inputs by subtracting the per-pixel mean; do the same (or
scale to [0, 1]) in your input pipeline.

Stages are named conv2, conv3, conv4 (`conv{stage}_block{i}_...`), like
the ImageNet models, so `feature_model` returns "C2", "C3" and "C4" at
strides 1, 2 and 4.
"""

from __future__ import annotations

from .architecture.build import create_model
from .architecture.specs import SPECS
from .architecture.docs import document

_RESNET_ABOUT = (
    "CIFAR ResNet: 3x3/16 stem, three stages of basic blocks (16/32/64 "
    "filters), shortcut option A (parameter-free) by default."
)
_PLAIN_ABOUT = (
    "CIFAR plain net: the CIFAR ResNet of the same depth without any "
    "shortcut (He et al. 2015, Figure 6)."
)

__all__ = [
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
]


@document("resnet20", "the CIFAR ResNet-20", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet20(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet20",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet20"], **locals())


@document("resnet32", "the CIFAR ResNet-32", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet32(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet32",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet32"], **locals())


@document("resnet44", "the CIFAR ResNet-44", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet44(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet44",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet44"], **locals())


@document("resnet56", "the CIFAR ResNet-56", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet56(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet56",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet56"], **locals())


@document("resnet110", "the CIFAR ResNet-110", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet110(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet110",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet110"], **locals())


@document("resnet1202", "the CIFAR ResNet-1202", _RESNET_ABOUT, "cifar", shortcut=True)
def ResNet1202(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="resnet1202",
    *,
    shortcut="A",
    manifest=None,
    offline=None,
):
    return create_model(SPECS["resnet1202"], **locals())


@document("plain20", "the CIFAR plain net of 20 layers", _PLAIN_ABOUT, "cifar")
def PlainNet20(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="plain20",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["plain20"], **locals())


@document("plain32", "the CIFAR plain net of 32 layers", _PLAIN_ABOUT, "cifar")
def PlainNet32(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="plain32",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["plain32"], **locals())


@document("plain44", "the CIFAR plain net of 44 layers", _PLAIN_ABOUT, "cifar")
def PlainNet44(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="plain44",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["plain44"], **locals())


@document("plain56", "the CIFAR plain net of 56 layers", _PLAIN_ABOUT, "cifar")
def PlainNet56(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="plain56",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["plain56"], **locals())


@document("plain110", "the CIFAR plain net of 110 layers", _PLAIN_ABOUT, "cifar")
def PlainNet110(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="plain110",
    *,
    manifest=None,
    offline=None,
):
    return create_model(SPECS["plain110"], **locals())
