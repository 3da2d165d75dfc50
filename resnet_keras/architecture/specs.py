"""Architecture variants as plain data, and where their channels are (no Keras import).

Every model of the zoo is one `ResNetSpec`; the builder turns a spec into a
Keras graph. Adding a variant is a row here plus one builder decorated with
`catalog.register_model` (see that module).

The data-format rule lives here too, as the last section: Keras'
`image_data_format` is "channels_last" (images are (H, W, C), batches
(N, H, W, C)) or "channels_first" ((C, H, W), (N, C, H, W)). Every module
that needs a channel axis, a spatial size or an input shape asks here;
Keras is imported only by `current_data_format()`, so the command line can
describe models without loading it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Sequence

from ..errors import InvalidArgumentError, did_you_mean

BlockKind = Literal["bottleneck", "preact_bottleneck", "basic", "plain"]
StemKind = Literal["imagenet", "cifar"]
ShortcutOption = Literal["A", "B"]
StrideOn = Literal["first_1x1", "3x3"]

BLOCK_KINDS = ("bottleneck", "preact_bottleneck", "basic", "plain")
STEM_KINDS = ("imagenet", "cifar")
SHORTCUT_OPTIONS = ("A", "B")
STRIDE_ON = ("first_1x1", "3x3")
STEM_STRIDES = {"cifar": 1, "imagenet": 4}  # ImageNet: conv1 /2, pool1 /2

# keras.applications uses 1.001e-5 (not 1e-5) in every ResNet BatchNorm; the
# official weights were converted with it, so outputs match only with it.
BN_EPSILON = 1.001e-5
# torchvision (and the paper's CIFAR nets, built with torch defaults) use
# 1e-5; with it a converted torchvision checkpoint gives torchvision's outputs.
TORCH_BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """One ResNet variant.

    Attributes:
        name: Default model name; also the registry key and manifest key.
        block: `"bottleneck"` (V1, post-activation), `"preact_bottleneck"`
            (V2, pre-activation as in TF-slim), `"basic"` (two 3x3 convs,
            post-activation: ResNet-18/34 and the CIFAR ResNets) or
            `"plain"` (a basic block without its shortcut).
        depths: Number of blocks in each stage (conv2, conv3, ...).
        widths: Width of each stage; a block outputs `expansion` x this.
        stem: `"imagenet"` (7x7/2 conv, 3x3/2 max pool: stride 4) or
            `"cifar"` (one 3x3 conv, stride 1).
        stem_width: Filters of the stem convolution.
        bn_epsilon: Epsilon of every BatchNormalization layer.
        conv_bias: Whether the convolutions of the stem and of V1/basic
            blocks have biases (V2 blocks follow TF-slim, fixed).
        shortcut: Where a block changes shape: `"B"` projects with a strided
            1x1 conv + BN; `"A"` subsamples and pads channels with zeros
            (no parameters; basic blocks only).
        preprocessing: The `preprocess_input` mode the model expects, or
            None where no pretrained weights define one.
        stride_on: Where a `"bottleneck"` block that downsamples strides:
            `"first_1x1"` (keras' V1, the original Caffe layout) or `"3x3"`
            (ResNet v1.5, the layout of torchvision and timm).
        default_size: Default (and pretrained) input height and width.
        classes: Default number of classes of the builder.
    """

    name: str
    block: BlockKind
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: StemKind = "imagenet"
    stem_width: int = 64
    bn_epsilon: float = BN_EPSILON
    conv_bias: bool = True
    shortcut: ShortcutOption = "B"
    preprocessing: str | None = "caffe"
    stride_on: StrideOn = "first_1x1"
    default_size: int = 224
    classes: int = 1000

    def __post_init__(self):
        problems = []
        if self.block not in BLOCK_KINDS:
            problems.append(f"block must be one of {BLOCK_KINDS}")
        if self.stem not in STEM_KINDS:
            problems.append(f"stem must be one of {STEM_KINDS}")
        if self.shortcut not in SHORTCUT_OPTIONS:
            problems.append(f"shortcut must be one of {SHORTCUT_OPTIONS}")
        if not self.depths or len(self.depths) != len(self.widths):
            problems.append("depths and widths must have the same, non-zero length")
        if self.stride_on not in STRIDE_ON:
            problems.append(f"stride_on must be one of {STRIDE_ON}")
        if self.stride_on != "first_1x1" and self.block != "bottleneck":
            problems.append("stride_on is an option of 'bottleneck' blocks only")
        if self.preact and (self.bn_epsilon != BN_EPSILON or not self.conv_bias):
            # TF-slim's layout, fixed by keras' V2 weights.
            problems.append("preact_bottleneck blocks use keras' BN epsilon and conv biases")
        if self.shortcut == "A" and self.block not in ("basic", "plain"):
            problems.append("shortcut 'A' exists for basic blocks only")
        if self.shortcut == "A" and any(
            b != 2 * a for a, b in zip((self.stem_width,) + self.widths, self.widths)
            if a != b
        ):
            problems.append("shortcut 'A' needs each width change to double")
        if problems:
            raise ValueError(f"Invalid ResNetSpec {self.name!r}: {'; '.join(problems)}.")

    @property
    def preact(self) -> bool:
        return self.block == "preact_bottleneck"

    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of stage width."""
        return 4 if self.block in ("bottleneck", "preact_bottleneck") else 1

    @property
    def stage_strides(self) -> tuple[int, ...]:
        # V1 and basic nets downsample at the start of every stage but the
        # first (the ImageNet stem already strides by 4); TF-slim V2
        # downsamples at the end of every stage but the last.
        n = len(self.depths)
        if self.preact:
            return (2,) * (n - 1) + (1,)
        return (1,) + (2,) * (n - 1)

    @property
    def stem_stride(self) -> int:
        return STEM_STRIDES[self.stem]

    @property
    def min_size(self) -> int:
        """Smallest input height and width: the total stride, so the last feature map is at least 1x1."""
        return self.stem_stride * math.prod(self.stage_strides)

    @property
    def block_name(self) -> str:
        """`block`, with "_v1.5" for bottlenecks that stride on the 3x3 (for listings)."""
        return "bottleneck_v1.5" if self.stride_on == "3x3" else self.block

    @property
    def torch_layout(self) -> bool:
        """Whether torchvision/timm checkpoints fit: an ImageNet stem and
        basic blocks or v1.5 bottlenecks (keras' V1 has the same shapes
        but strides elsewhere, so loading one there would be silently wrong)."""
        return self.stem == "imagenet" and (
            self.block == "basic" or (self.block == "bottleneck" and self.stride_on == "3x3")
        )

    @property
    def num_layers(self) -> int:
        """Weighted layers counted as in the paper (convs of the main path + fc)."""
        per_block = 3 if self.expansion == 4 else 2
        return 1 + per_block * sum(self.depths) + 1


_V1 = dict(block="bottleneck", preprocessing="caffe")
_V2 = dict(block="preact_bottleneck", preprocessing="tf")
# torchvision's layout: no conv bias, BN epsilon 1e-5, projection only where
# the shape changes; torchvision weights expect "torch" preprocessing.
_TORCHVISION = dict(
    block="basic", conv_bias=False, bn_epsilon=TORCH_BN_EPSILON, preprocessing="torch"
)
# ResNet v1.5 (torchvision's and timm's ResNet-50/101/152): keras' V1 blocks
# with the stride on the 3x3 conv and torchvision's conv/BN conventions.
_V1_5 = dict(_TORCHVISION, block="bottleneck", stride_on="3x3")
# The paper's section 4.2: 3x3/16 stem, three stages of 16/32/64 filters.
_CIFAR = dict(
    widths=(16, 32, 64),
    stem="cifar",
    stem_width=16,
    conv_bias=False,
    bn_epsilon=TORCH_BN_EPSILON,
    shortcut="A",
    preprocessing=None,
    default_size=32,
    classes=10,
)
# 6n + 2 layers -> n blocks per stage (paper Table 6).
CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
PLAIN_DEPTHS = (20, 32, 44, 56, 110)

SPECS: dict[str, ResNetSpec] = {
    spec.name: spec
    for spec in (
        ResNetSpec("resnet18", depths=(2, 2, 2, 2), **_TORCHVISION),
        ResNetSpec("resnet34", depths=(3, 4, 6, 3), **_TORCHVISION),
        ResNetSpec("resnet50", depths=(3, 4, 6, 3), **_V1),
        ResNetSpec("resnet101", depths=(3, 4, 23, 3), **_V1),
        ResNetSpec("resnet152", depths=(3, 8, 36, 3), **_V1),
        ResNetSpec("resnet50_v1_5", depths=(3, 4, 6, 3), **_V1_5),
        ResNetSpec("resnet101_v1_5", depths=(3, 4, 23, 3), **_V1_5),
        ResNetSpec("resnet152_v1_5", depths=(3, 8, 36, 3), **_V1_5),
        ResNetSpec("resnet50v2", depths=(3, 4, 6, 3), **_V2),
        ResNetSpec("resnet101v2", depths=(3, 4, 23, 3), **_V2),
        ResNetSpec("resnet152v2", depths=(3, 8, 36, 3), **_V2),
        *(
            ResNetSpec(f"resnet{layers}", block="basic", depths=(n,) * 3, **_CIFAR)
            for layers, n in CIFAR_DEPTHS.items()
        ),
        *(
            ResNetSpec(
                f"plain{layers}", block="plain", depths=(CIFAR_DEPTHS[layers],) * 3, **_CIFAR
            )
            for layers in PLAIN_DEPTHS
        ),
    )
}


def unknown_model(name: Any) -> InvalidArgumentError:
    suggestion = did_you_mean(str(name).lower(), SPECS, n=3)
    return InvalidArgumentError(
        "`name` must be a registered model (see resnet_keras.list_models())."
        f"{suggestion} Received: name={name!r}"
    )


def model_key(name: Any) -> str:
    """The registry key of `name` (case-insensitive); unknown names raise with close matches."""
    if not isinstance(name, str) or name.lower() not in SPECS:
        raise unknown_model(name)
    return name.lower()


# -- Where the channels are: the one data-format rule of the package ---------------

CHANNELS_LAST = "channels_last"
CHANNELS_FIRST = "channels_first"
FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)


def current_data_format() -> str:
    """The global `keras.config.image_data_format()`."""
    import keras

    return keras.config.image_data_format()


def check_data_format(data_format: str | None) -> str:
    """`data_format` if it is one of `FORMATS`, the global one for None."""
    if data_format is None:
        return current_data_format()
    if data_format not in FORMATS:
        raise InvalidArgumentError(
            "`data_format` must be 'channels_first' or 'channels_last'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format: str, *, batched: bool = True) -> int:
    """The channel axis of a batch (1 or -1), or of one image (0 or -1)."""
    if data_format == CHANNELS_FIRST:
        return 1 if batched else 0
    return -1


def spatial_dims(shape: Sequence, data_format: str, *, batched: bool = True) -> tuple:
    """(height, width) of a batch shape, or of one image's shape."""
    start = (1 if batched else 0) + (data_format == CHANNELS_FIRST)
    return tuple(shape[start:start + 2])


def image_shape(size: int | None, data_format: str, channels: int = 3) -> tuple:
    """The shape of one square image: (C, H, W) or (H, W, C)."""
    if data_format == CHANNELS_FIRST:
        return (channels, size, size)
    return (size, size, channels)


def layout(data_format: str) -> str:
    """How one image's dimensions are ordered, for messages: "(H, W, C)"."""
    return "(C, H, W)" if data_format == CHANNELS_FIRST else "(H, W, C)"
