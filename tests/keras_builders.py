"""The six keras.applications ResNets and ours of the same names, by key (the drop-in promise)."""

from __future__ import annotations

import keras

import resnet_keras

KERAS_BUILDERS = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "resnet152": keras.applications.ResNet152,
    "resnet50v2": keras.applications.ResNet50V2,
    "resnet101v2": keras.applications.ResNet101V2,
    "resnet152v2": keras.applications.ResNet152V2,
}
OUR_BUILDERS = {key: getattr(resnet_keras, keras_builder.__name__) for key, keras_builder in KERAS_BUILDERS.items()}
