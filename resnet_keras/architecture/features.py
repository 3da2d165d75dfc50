"""Multi-scale features: a zoo model's stage outputs as a dict-output model.

`feature_model(model)` wraps the layers of an existing model (built with
or without weights, with or without its top), so the returned model shares
its weights: training one trains the other. `feature_info(model)` describes
the outputs.

Which tensor is "C{k}": the deepest feature of stage conv{k} at that
stage's resolution.
- V1, ResNet-18/34, CIFAR nets: the last block's output
  `conv{k}_block{n}_out`.
- V2 (TF-slim layout) strides in the LAST block of conv2..conv4, so the
  deepest stride-2^k feature is what enters that block: the output of
  block n-1 (`conv3_block3_out` for C3 of ResNet50V2; the residual stream,
  not normalized); the last stage gives `post_relu` (normalized and
  activated).
The ImageNet models give C2..C5 at strides 4, 8, 16 and 32; the CIFAR
models C2..C4 at strides 1, 2 and 4. The builder records these stages while
it builds (`architecture.blocks.body`); a model without that record (loaded
from a .keras file, cloned, or a keras.applications ResNet) is read from its
layer names, the contract its weight files rely on.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import keras

from .blocks import FEATURE_STAGES, FeatureStage
from .graph import graph_depth
from .specs import channel_axis
from ..errors import did_you_mean
from ..errors import InvalidArgumentError

_BLOCK_OUT = re.compile(r"conv(\d+)_block(\d+)_out$")


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One multi-scale output of a zoo model.

    Attributes:
        name: Output key, `"C{k}"` for stage conv{k}.
        layer: The layer whose output it is, e.g. `"conv3_block4_out"`.
        channels: Number of channels.
        stride: Input size / feature size (a power of two).
    """

    name: str
    layer: str
    channels: int
    stride: int


def _stages(model: keras.Model) -> tuple[FeatureStage, ...]:
    """The stages the builder recorded, else those the layer names show."""
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(
            "`model` must be a Keras model of resnet_keras (or "
            "keras.applications ResNet). Received: model of type "
            f"{type(model).__name__}"
        )
    recorded = getattr(model, FEATURE_STAGES, None)
    # A model loaded from a .keras file, cloned, or built by keras.applications
    # has no record; its layer names follow the same contract (the weight files').
    return recorded if recorded is not None else _stages_from_layer_names(model)


def _stages_from_layer_names(model: keras.Model) -> tuple[FeatureStage, ...]:
    blocks = sorted(
        (tuple(map(int, match.groups())), layer.name)
        for layer in model.layers
        if (match := _BLOCK_OUT.match(layer.name))
    )
    if not blocks:
        raise InvalidArgumentError(
            "`model` must be a ResNet of resnet_keras (or keras.applications) "
            "with its layer names: no `conv{k}_block{i}_out` layers found. "
            f"Received: model={model.name!r}"
        )
    preact = "post_relu" in {layer.name for layer in model.layers}
    # the output layer of each stage's last block, and the layer before it
    last_of_stage: dict[int, tuple[str, str]] = {}
    previous = "pool1_pool"
    for (stage, _), name in blocks:
        last_of_stage[stage] = (name, last_of_stage.get(stage, (previous,))[0])
        previous = name
    final = max(last_of_stage)
    stages = []
    for stage, (last, before_last) in sorted(last_of_stage.items()):
        if preact:
            # V2 strides in the last block: the stride-2^k feature enters it
            layer_name = "post_relu" if stage == final else before_last
        else:
            layer_name = last
        stages.append(FeatureStage(f"C{stage}", layer_name, _stride_of(model, layer_name)))
    return tuple(stages)


def _stride_of(model: keras.Model, layer_name: str) -> int:
    """Product of the strides on a path from the input to `layer_name`.

    Every path to a tensor of a ResNet has the same stride; this follows
    each layer's first input back to the model's input.
    """
    producers = {id(layer.output): layer for layer in model.layers}
    layer, stride = model.get_layer(layer_name), 1
    while layer is not None and not isinstance(layer, keras.layers.InputLayer):
        strides = getattr(layer, "strides", None)
        if strides:
            stride *= int(strides[0])
        source = keras.tree.flatten(layer.input)[0]
        layer = producers.get(id(source))
    return stride


def _features(model: keras.Model) -> dict[str, tuple[str, object, int]]:
    """{key: (layer name, tensor, stride)} per stage, shallowest first."""
    return {
        stage.name: (stage.layer, model.get_layer(stage.layer).output, stage.stride)
        for stage in _stages(model)
    }


def feature_info(model: keras.Model) -> list[FeatureInfo]:
    """Name, layer, channels and stride of each stage output of a zoo model.

    Args:
        model: A model built by resnet_keras (any family, with or without
            its top), or a keras.applications ResNet.

    Returns:
        One `FeatureInfo` per stage, shallowest first.

    Example:
        >>> import resnet_keras
        >>> info = resnet_keras.feature_info(resnet_keras.ResNet20())
        >>> [(f.name, f.channels, f.stride) for f in info]
        [('C2', 16, 1), ('C3', 32, 2), ('C4', 64, 4)]
    """
    features = _features(model)
    axis = channel_axis(model.get_layer("conv1_conv").data_format)
    return [
        FeatureInfo(key, layer, int(tensor.shape[axis]), stride)
        for key, (layer, tensor, stride) in features.items()
    ]


def feature_model(
    model: keras.Model, stages: Sequence[str] | None = None
) -> keras.Model:
    """A model with the same input whose output is a dict of stage features.

    The new model reuses `model`'s layers, so it shares their weights (no
    copy): load or train either one and both change.

    Args:
        model: A model built by resnet_keras (or a keras.applications
            ResNet), with or without its top.
        stages: Keys to return, e.g. `["C3", "C4", "C5"]`; None for all
            (see `feature_info`).

    Returns:
        A `keras.Model` named `{model.name}_features` with outputs
        `{"C2": ..., "C3": ..., ...}`.

    Raises:
        InvalidArgumentError: `model` is not a zoo ResNet, or `stages` names
            an unknown stage (close matches are suggested).

    Example: a small FPN head on C3..C5.

        >>> import keras
        >>> from keras import layers
        >>> import resnet_keras
        >>> backbone = resnet_keras.ResNet18(include_top=False,
        ...     input_shape=(128, 128, 3))
        >>> features = resnet_keras.feature_model(backbone, stages=["C3", "C4", "C5"])
        >>> c = features.output  # {"C3": tensor, "C4": ..., "C5": ...}
        >>> p5 = layers.Conv2D(64, 1, name="fpn_lat5")(c["C5"])
        >>> p4 = layers.Add()([layers.UpSampling2D()(p5),
        ...     layers.Conv2D(64, 1, name="fpn_lat4")(c["C4"])])
        >>> p3 = layers.Add()([layers.UpSampling2D()(p4),
        ...     layers.Conv2D(64, 1, name="fpn_lat3")(c["C3"])])
        >>> outputs = {f"P{i}": layers.Conv2D(64, 3, padding="same", name=f"fpn_out{i}")(p)
        ...     for i, p in ((3, p3), (4, p4), (5, p5))}
        >>> fpn = keras.Model(features.input, outputs)
        >>> {k: tuple(v.shape) for k, v in fpn.output.items()}
        {'P3': (None, 16, 16, 64), 'P4': (None, 8, 8, 64), 'P5': (None, 4, 4, 64)}
    """
    found = {key: tensor for key, (_, tensor, _) in _features(model).items()}
    if stages is None:
        wanted = list(found)
    elif isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise InvalidArgumentError(
            "`stages` must be None or a non-empty list of stage names such "
            f"as {list(found)}. Received: stages={stages!r}"
        )
    else:
        wanted = list(stages)
        for key in wanted:
            if key not in found:
                suggestion = did_you_mean(str(key).upper(), found)
                raise InvalidArgumentError(
                    f"`stages` must name stages of {model.name} "
                    f"({', '.join(found)}).{suggestion} Received: stages={stages!r}"
                )
        if len(set(wanted)) != len(wanted):
            raise InvalidArgumentError(
                f"`stages` must not repeat a stage. Received: stages={stages!r}"
            )
    with graph_depth(len(model.layers)):
        return keras.Model(
            model.input,  # the same structure as the model's, so calls match
            {key: found[key] for key in wanted},
            name=f"{model.name}_features",
        )
