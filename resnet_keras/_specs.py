"""Architecture variants as plain data (no Keras import).

Every model of the zoo is one `ResNetSpec`; the builder turns a spec into a
Keras graph. Adding a variant means adding a row here, not writing code.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

BlockKind = Literal["bottleneck", "preact_bottleneck"]


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """One ResNet variant.

    Attributes:
        name: Default model name; also the registry key and manifest key.
        block: `"bottleneck"` (V1, post-activation) or `"preact_bottleneck"`
            (V2, pre-activation as in TF-slim).
        depths: Number of blocks in each of the stages conv2..conv5.
        widths: Bottleneck width of each stage; a block outputs 4x this.
        preprocessing: The `preprocess_input` mode the pretrained weights use.
        default_size: Default (and pretrained) input height and width.
        min_size: Smallest input height and width the stem accepts.
    """

    name: str
    block: BlockKind
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    preprocessing: str = "caffe"
    default_size: int = 224
    min_size: int = 32

    @property
    def preact(self) -> bool:
        return self.block == "preact_bottleneck"

    @property
    def stage_strides(self) -> tuple[int, ...]:
        # V1 downsamples at the start of stages 3..5 (stage 2 follows the
        # max pool); TF-slim V2 downsamples at the end of stages 2..4.
        n = len(self.depths)
        if self.preact:
            return (2,) * (n - 1) + (1,)
        return (1,) + (2,) * (n - 1)


_V1 = dict(block="bottleneck", preprocessing="caffe")
_V2 = dict(block="preact_bottleneck", preprocessing="tf")

SPECS: dict[str, ResNetSpec] = {
    spec.name: spec
    for spec in (
        ResNetSpec("resnet50", depths=(3, 4, 6, 3), **_V1),
        ResNetSpec("resnet101", depths=(3, 4, 23, 3), **_V1),
        ResNetSpec("resnet152", depths=(3, 8, 36, 3), **_V1),
        ResNetSpec("resnet50v2", depths=(3, 4, 6, 3), **_V2),
        ResNetSpec("resnet101v2", depths=(3, 4, 23, 3), **_V2),
        ResNetSpec("resnet152v2", depths=(3, 8, 36, 3), **_V2),
    )
}
