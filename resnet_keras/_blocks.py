"""Residual blocks and stages; every layer is named explicitly.

Layer names, the order in which weighted layers are created and their
shapes are the contract with the official Keras weight files: legacy HDF5
files are matched layer by layer. Change nothing here without the golden
fingerprints in tests/golden/ failing first.
"""

from __future__ import annotations

import keras
from keras import layers

# keras.applications uses 1.001e-5 (not 1e-5) in every ResNet BatchNorm; the
# official weights were converted with it, so outputs match only with it.
BN_EPSILON = 1.001e-5
EXPANSION = 4  # bottleneck output channels = EXPANSION * width


def _bn_axis() -> int:
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def batch_norm(x, name: str):
    return layers.BatchNormalization(
        axis=_bn_axis(), epsilon=BN_EPSILON, name=name
    )(x)


def bottleneck_v1(x, width: int, *, stride: int, projection: bool, name: str):
    """Post-activation bottleneck (ResNet V1, Caffe layout).

    The stride sits on the first 1x1 convolution, as in the original
    Caffe models that the keras weights come from.
    """
    if projection:
        shortcut = layers.Conv2D(
            EXPANSION * width, 1, strides=stride, name=f"{name}_0_conv"
        )(x)
        shortcut = batch_norm(shortcut, f"{name}_0_bn")
    else:
        shortcut = x

    x = layers.Conv2D(width, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = batch_norm(x, f"{name}_1_bn")
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_2_conv")(x)
    x = batch_norm(x, f"{name}_2_bn")
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(EXPANSION * width, 1, name=f"{name}_3_conv")(x)
    x = batch_norm(x, f"{name}_3_bn")

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


def stage_v1(x, width: int, depth: int, *, stride: int, name: str):
    """A V1 stage: the first block projects (and strides), the rest are identity."""
    for i in range(1, depth + 1):
        first = i == 1
        x = bottleneck_v1(
            x,
            width,
            stride=stride if first else 1,
            projection=first,
            name=f"{name}_block{i}",
        )
    return x


def stage_v2(x, width: int, depth: int, *, stride: int, name: str):
    """A V2 stage: the first block projects, the LAST block strides (TF-slim)."""
    for i in range(1, depth + 1):
        x = bottleneck_v2(
            x,
            width,
            stride=stride if i == depth else 1,
            projection=i == 1,
            name=f"{name}_block{i}",
        )
    return x
