"""The layers of the body: stem, residual blocks and stages (every layer named explicitly), and the stages in order.

Layer names, the order in which weighted layers are created and their
shapes are the contract with the official Keras weight files: legacy HDF5
files are matched layer by layer. Change nothing here without the golden
fingerprints in tests/golden/ failing first.
"""

from __future__ import annotations

import dataclasses

from keras import layers

from .specs import BN_EPSILON, ResNetSpec, channel_axis, current_data_format

EXPANSION = 4  # bottleneck output channels = EXPANSION * width


# The model attribute that holds the body's feature stages (architecture.features reads it).
FEATURE_STAGES = "_resnet_keras_feature_stages"


@dataclasses.dataclass(frozen=True)
class FeatureStage:
    """One multi-scale output of the body, recorded while it is built.

    Attributes:
        name: `"C{k}"` for stage conv{k}.
        layer: The layer whose output it is, e.g. `"conv3_block4_out"`.
        stride: Input size / feature size.
    """

    name: str
    layer: str
    stride: int


def _stage(index: int, feature, stride: int) -> FeatureStage:
    return FeatureStage(f"C{index}", feature._keras_history.operation.name, stride)


def batch_norm(x, name: str, epsilon: float = BN_EPSILON):
    return layers.BatchNormalization(
        axis=channel_axis(current_data_format()), epsilon=epsilon, name=name
    )(x)


def bottleneck_v1(
    x,
    width: int,
    *,
    stride: int,
    projection: bool,
    name: str,
    stride_on: str = "first_1x1",
    epsilon: float = BN_EPSILON,
    use_bias: bool = True,
):
    """Post-activation bottleneck (ResNet V1; v1.5 with `stride_on="3x3"`).

    keras' V1 (the original Caffe models its weights come from) strides on
    the first 1x1 convolution; v1.5 (torchvision, timm) on the 3x3, padded
    on all sides as torch pads (`_2_pad`, see `_conv3x3`).
    """
    if projection:
        shortcut = layers.Conv2D(
            EXPANSION * width, 1, strides=stride, use_bias=use_bias, name=f"{name}_0_conv"
        )(x)
        shortcut = batch_norm(shortcut, f"{name}_0_bn", epsilon)
    else:
        shortcut = x

    stride_1x1, stride_3x3 = (stride, 1) if stride_on == "first_1x1" else (1, stride)
    x = layers.Conv2D(width, 1, strides=stride_1x1, use_bias=use_bias, name=f"{name}_1_conv")(x)
    x = batch_norm(x, f"{name}_1_bn", epsilon)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv3x3(x, width, stride=stride_3x3, use_bias=use_bias, name=f"{name}_2")
    x = batch_norm(x, f"{name}_2_bn", epsilon)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(EXPANSION * width, 1, use_bias=use_bias, name=f"{name}_3_conv")(x)
    x = batch_norm(x, f"{name}_3_bn", epsilon)

    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def bottleneck_v2(x, width: int, *, stride: int, projection: bool, name: str):
    """Pre-activation bottleneck (ResNet V2, TF-slim layout).

    The stride sits on the 3x3 convolution (explicit pad, then valid conv).
    A projection shortcut reads the pre-activated input; an identity
    shortcut with a stride is a 1x1 max pool (keras names that layer
    automatically; we call it `{name}_0_pool`, it has no weights).
    """
    preact = batch_norm(x, f"{name}_preact_bn")
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)

    if projection:
        shortcut = layers.Conv2D(
            EXPANSION * width, 1, strides=stride, name=f"{name}_0_conv"
        )(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(
            1, strides=stride, name=f"{name}_0_pool"
        )(x)
    else:
        shortcut = x

    x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_1_conv")(preact)
    x = batch_norm(x, f"{name}_1_bn")
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_2_pad")(x)
    x = layers.Conv2D(
        width, 3, strides=stride, use_bias=False, name=f"{name}_2_conv"
    )(x)
    x = batch_norm(x, f"{name}_2_bn")
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(EXPANSION * width, 1, name=f"{name}_3_conv")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


def stage_v1(x, width: int, depth: int, *, stride: int, spec: ResNetSpec, name: str):
    """A V1 (or v1.5) stage: the first block projects (and strides), the rest are identity."""
    for i in range(1, depth + 1):
        first = i == 1
        x = bottleneck_v1(
            x,
            width,
            stride=stride if first else 1,
            projection=first,
            name=f"{name}_block{i}",
            stride_on=spec.stride_on,
            epsilon=spec.bn_epsilon,
            use_bias=spec.conv_bias,
        )
    return x


def stage_v2(x, width: int, depth: int, *, stride: int, name: str):
    """A V2 stage: the first block projects, the LAST block strides (TF-slim).

    Returns the stage output and its feature: what enters the last block, the
    deepest tensor before the stride (the residual stream, not normalized).
    """
    for i in range(1, depth + 1):
        feature = x
        x = bottleneck_v2(
            x,
            width,
            stride=stride if i == depth else 1,
            projection=i == 1,
            name=f"{name}_block{i}",
        )
    return x, feature


def _conv3x3(x, filters: int, *, stride: int, use_bias: bool, name: str):
    """3x3 conv; with a stride, an explicit symmetric pad then a valid conv.

    keras' "same" padding pads a strided conv on the bottom/right only,
    torch pads all sides; the explicit pad keeps a converted torchvision
    checkpoint numerically exact. (`{name}` ends in `_1` or `_2`.)
    """
    if stride == 1:
        return layers.Conv2D(
            filters, 3, padding="same", use_bias=use_bias, name=f"{name}_conv"
        )(x)
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, 3, strides=stride, use_bias=use_bias, name=f"{name}_conv"
    )(x)


def _zero_pad_shortcut(x, *, stride: int, name: str):
    """Option A: subsample by `stride`, double the channels with zeros.

    Built from stock layers (no Lambda), so saved models load without
    custom objects: a 1x1 max pool subsamples, a zero rescaling makes the
    zero channels.
    """
    if stride > 1:
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    zeros = layers.Rescaling(0.0, name=f"{name}_0_zeros")(x)
    return layers.Concatenate(axis=channel_axis(current_data_format()), name=f"{name}_0_pad")([x, zeros])


def basic_block(
    x,
    filters: int,
    *,
    stride: int,
    shortcut: str | None,
    epsilon: float,
    use_bias: bool,
    name: str,
):
    """Two 3x3 convs, post-activation (ResNet-18/34, the CIFAR ResNets).

    `shortcut`: "identity", "projection" (1x1 conv + BN, option B),
    "zero_pad" (option A) or None (a plain block: no shortcut, no add).
    The stride sits on the first 3x3 conv, as in torchvision.
    """
    if shortcut == "projection":
        residual = layers.Conv2D(
            filters, 1, strides=stride, use_bias=use_bias, name=f"{name}_0_conv"
        )(x)
        residual = batch_norm(residual, f"{name}_0_bn", epsilon)
    elif shortcut == "zero_pad":
        residual = _zero_pad_shortcut(x, stride=stride, name=name)
    else:
        residual = x

    x = _conv3x3(x, filters, stride=stride, use_bias=use_bias, name=f"{name}_1")
    x = batch_norm(x, f"{name}_1_bn", epsilon)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv3x3(x, filters, stride=1, use_bias=use_bias, name=f"{name}_2")
    x = batch_norm(x, f"{name}_2_bn", epsilon)

    if shortcut is not None:
        x = layers.Add(name=f"{name}_add")([residual, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stage_basic(
    x,
    filters: int,
    depth: int,
    *,
    stride: int,
    in_filters: int,
    spec: ResNetSpec,
    name: str,
):
    """A stage of basic (or plain) blocks; only the first may change shape."""
    for i in range(1, depth + 1):
        first = i == 1
        block_stride = stride if first else 1
        if spec.block == "plain":
            shortcut = None
        elif block_stride == 1 and (not first or in_filters == filters):
            shortcut = "identity"
        else:
            shortcut = "zero_pad" if spec.shortcut == "A" else "projection"
        x = basic_block(
            x,
            filters,
            stride=block_stride,
            shortcut=shortcut,
            epsilon=spec.bn_epsilon,
            use_bias=spec.conv_bias,
            name=f"{name}_block{i}",
        )
    return x


def stem(x, spec: ResNetSpec):
    """conv1 (and pool1 for ImageNet-style models)."""
    if spec.stem == "cifar":
        x = layers.Conv2D(
            spec.stem_width, 3, padding="same", use_bias=spec.conv_bias, name="conv1_conv"
        )(x)
        x = batch_norm(x, "conv1_bn", spec.bn_epsilon)
        return layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=3, name="conv1_pad")(x)
    x = layers.Conv2D(
        spec.stem_width, 7, strides=2, use_bias=spec.conv_bias, name="conv1_conv"
    )(x)
    if not spec.preact:
        x = batch_norm(x, "conv1_bn", spec.bn_epsilon)
        x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def body(x, spec: ResNetSpec) -> tuple[object, list[FeatureStage]]:
    """Stem, stages conv2, conv3, ... and (V2) the final BN + ReLU.

    Returns the output and the feature of each stage ("C{k}": its deepest
    tensor at its resolution), the way keras-hub records `pyramid_outputs`.
    """
    x = stem(x, spec)
    channels = spec.stem_width
    stride_in = spec.stem_stride
    features = []
    for index, (width, depth, stride) in enumerate(
        zip(spec.widths, spec.depths, spec.stage_strides), start=2
    ):
        name = f"conv{index}"
        if spec.block == "bottleneck":
            x = feature = stage_v1(x, width, depth, stride=stride, spec=spec, name=name)
            feature_stride = stride_in * stride
        elif spec.block == "preact_bottleneck":
            x, feature = stage_v2(x, width, depth, stride=stride, name=name)
            feature_stride = stride_in  # before the last block's stride
        else:
            x = feature = stage_basic(
                x, width, depth, stride=stride, in_filters=channels, spec=spec, name=name
            )
            feature_stride = stride_in * stride
        features.append(_stage(index, feature, feature_stride))
        stride_in *= stride
        channels = width * spec.expansion
    if spec.preact:
        x = batch_norm(x, "post_bn", spec.bn_epsilon)
        x = layers.Activation("relu", name="post_relu")(x)
        # the last stage's feature is normalized and activated (keras' V2 output)
        features[-1] = _stage(index, x, stride_in)
    return x, features
