"""ResNet V1 in the keras.applications layout (He et al. 2015,
"Deep Residual Learning for Image Recognition").

Mirrors `keras.applications.resnet`: same builders, same
`preprocess_input` and `decode_predictions`.
"""

from __future__ import annotations

from . import _imagenet
from .architecture.build import create_model
from .architecture.catalog import builder_names, preprocessing_of, register_model
from .architecture.specs import SPECS

# Shown in every builder docstring of this module.
_ABOUT = (
    "Bottleneck blocks (1x1, 3x3, 1x1 convolutions), post-activation, "
    "stride on the first 1x1 conv; weights converted from the original "
    "Caffe models."
)


@register_model(SPECS["resnet50"], "ResNet-50", _ABOUT, keras_name=True)
def ResNet50(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet50",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet50"], **locals())


@register_model(SPECS["resnet101"], "ResNet-101", _ABOUT, keras_name=True)
def ResNet101(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet101",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet101"], **locals())


@register_model(SPECS["resnet152"], "ResNet-152", _ABOUT, keras_name=True)
def ResNet152(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet152",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet152"], **locals())


# The mode of this module's specs (SPECS is its one source).
_MODE = preprocessing_of(__name__)


def preprocess_input(x, data_format=None):
    """Preprocess RGB images in [0, 255] for these models ("caffe" mode:
    RGB to BGR, then minus the ImageNet channel means, no scaling).

    Same numbers and the same in-place behaviour as
    `keras.applications.resnet.preprocess_input`: a writable float NumPy array is
    written over and returned; integer arrays and tensors are left as they
    are. Inputs without exactly 3 channels raise `InvalidArgumentError`.
    """
    return _imagenet.preprocess_input(x, data_format=data_format, mode=_MODE)


def decode_predictions(preds, top=5):
    """Decode ImageNet predictions to `(wordnet_id, name, score)` tuples.

    Same output as keras; uses the class index shipped with the package.
    """
    return _imagenet.decode_predictions(preds, top=top)


# From the registrations above: a new builder is exported by its decorator.
__all__ = [*builder_names(__name__), "preprocess_input", "decode_predictions"]
