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

from .architecture.catalog import builder_names, define_builder
from .architecture.specs import SPECS

_RESNET_ABOUT = (
    "CIFAR ResNet: 3x3/16 stem, three stages of basic blocks (16/32/64 "
    "filters), shortcut option A (parameter-free) by default."
)
_PLAIN_ABOUT = (
    "CIFAR plain net: the CIFAR ResNet of the same depth without any "
    "shortcut (He et al. 2015, Figure 6)."
)


ResNet20 = define_builder("ResNet20", SPECS["resnet20"], "the CIFAR ResNet-20", _RESNET_ABOUT)
ResNet32 = define_builder("ResNet32", SPECS["resnet32"], "the CIFAR ResNet-32", _RESNET_ABOUT)
ResNet44 = define_builder("ResNet44", SPECS["resnet44"], "the CIFAR ResNet-44", _RESNET_ABOUT)
ResNet56 = define_builder("ResNet56", SPECS["resnet56"], "the CIFAR ResNet-56", _RESNET_ABOUT)
ResNet110 = define_builder("ResNet110", SPECS["resnet110"], "the CIFAR ResNet-110", _RESNET_ABOUT)
ResNet1202 = define_builder("ResNet1202", SPECS["resnet1202"], "the CIFAR ResNet-1202", _RESNET_ABOUT)

PlainNet20 = define_builder("PlainNet20", SPECS["plain20"], "the CIFAR plain net of 20 layers", _PLAIN_ABOUT)
PlainNet32 = define_builder("PlainNet32", SPECS["plain32"], "the CIFAR plain net of 32 layers", _PLAIN_ABOUT)
PlainNet44 = define_builder("PlainNet44", SPECS["plain44"], "the CIFAR plain net of 44 layers", _PLAIN_ABOUT)
PlainNet56 = define_builder("PlainNet56", SPECS["plain56"], "the CIFAR plain net of 56 layers", _PLAIN_ABOUT)
PlainNet110 = define_builder("PlainNet110", SPECS["plain110"], "the CIFAR plain net of 110 layers", _PLAIN_ABOUT)


# From the registrations above: a new builder is exported by its decorator.
__all__ = builder_names(__name__)
