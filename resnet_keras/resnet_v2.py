"""ResNet V2 in the keras.applications layout (He et al. 2016,
"Identity Mappings in Deep Residual Networks").

Mirrors `keras.applications.resnet_v2`: same builders, same
`preprocess_input` and `decode_predictions`.
"""

from __future__ import annotations

from . import _imagenet
from .architecture.build import create_model
from .architecture.catalog import builder_names, preprocessing_of, register_model
from .architecture.specs import SPECS

# Shown in every builder docstring of this module.
_ABOUT = (
    "Pre-activation bottleneck blocks (BatchNorm and ReLU before each "
    "convolution), TF-slim layout; weights from TF-slim, evaluated at "
    "299x299."
)


@register_model(SPECS["resnet50v2"], "ResNet-50 V2", _ABOUT, keras_name=True)
def ResNet50V2(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet50v2",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet50v2"], **locals())


@register_model(SPECS["resnet101v2"], "ResNet-101 V2", _ABOUT, keras_name=True)
def ResNet101V2(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet101v2",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet101v2"], **locals())


@register_model(SPECS["resnet152v2"], "ResNet-152 V2", _ABOUT, keras_name=True)
def ResNet152V2(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet152v2",
    *,
    manifest=None,
    offline=None,
    adapt_input_channels=False,
):
    return create_model(SPECS["resnet152v2"], **locals())


# The mode of this module's specs (SPECS is its one source).
_MODE = preprocessing_of(__name__)


def preprocess_input(x, data_format=None):
    """Preprocess RGB images in [0, 255] for these models ("tf" mode:
    scaled to [-1, 1]).

    Same numbers and the same in-place behaviour as
    `keras.applications.resnet_v2.preprocess_input`: a writable float NumPy array is
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
