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
from .architecture.catalog import builder_names, register_model
from .architecture.specs import SPECS

_RESNET_ABOUT = (
    "CIFAR ResNet: 3x3/16 stem, three stages of basic blocks (16/32/64 "
    "filters), shortcut option A (parameter-free) by default."
)
_PLAIN_ABOUT = (
    "CIFAR plain net: the CIFAR ResNet of the same depth without any "
    "shortcut (He et al. 2015, Figure 6)."
)


@register_model(SPECS["resnet20"], "the CIFAR ResNet-20", _RESNET_ABOUT,
                counts=(271_098, 269_722, 40_551_040))
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


@register_model(SPECS["resnet32"], "the CIFAR ResNet-32", _RESNET_ABOUT,
                counts=(466_426, 464_154, 68_862_592))
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


@register_model(SPECS["resnet44"], "the CIFAR ResNet-44", _RESNET_ABOUT,
                counts=(661_754, 658_586, 97_174_144))
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


@register_model(SPECS["resnet56"], "the CIFAR ResNet-56", _RESNET_ABOUT,
                counts=(857_082, 853_018, 125_485_696))
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


@register_model(SPECS["resnet110"], "the CIFAR ResNet-110", _RESNET_ABOUT,
                counts=(1_736_058, 1_727_962, 252_887_680))
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


@register_model(SPECS["resnet1202"], "the CIFAR ResNet-1202", _RESNET_ABOUT,
                counts=(19_510_906, 19_421_274, 2_829_238_912))
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


@register_model(SPECS["plain20"], "the CIFAR plain net of 20 layers", _PLAIN_ABOUT,
                counts=(271_098, 269_722, 40_551_040))
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


@register_model(SPECS["plain32"], "the CIFAR plain net of 32 layers", _PLAIN_ABOUT,
                counts=(466_426, 464_154, 68_862_592))
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


@register_model(SPECS["plain44"], "the CIFAR plain net of 44 layers", _PLAIN_ABOUT,
                counts=(661_754, 658_586, 97_174_144))
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


@register_model(SPECS["plain56"], "the CIFAR plain net of 56 layers", _PLAIN_ABOUT,
                counts=(857_082, 853_018, 125_485_696))
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


@register_model(SPECS["plain110"], "the CIFAR plain net of 110 layers", _PLAIN_ABOUT,
                counts=(1_736_058, 1_727_962, 252_887_680))
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


# From the registrations above: a new builder is exported by its decorator.
__all__ = builder_names(__name__)
