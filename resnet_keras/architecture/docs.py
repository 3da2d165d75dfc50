"""Builder docstrings, written once and filled per model.

The keras-compatible builders and the zoo builders (ResNet18/34, CIFAR
nets) share the argument text; they differ in defaults and pretrained
weights, which are filled from the spec.
"""

from __future__ import annotations

import inspect

from .specs import ResNetSpec

_TEMPLATE = '''Instantiate {title}{dropin}.

{about}

Args:
    include_top: Whether to include the classifier (`avg_pool` +
        `predictions`).
    weights: {weights}
    input_tensor: Optional Keras tensor (output of `keras.Input`) to use
        as the model input.
    input_shape: Optional shape tuple (or list). None means
        ({size}, {size}, 3) with the top (`(3, {size}, {size})` with
        channels_first), any height and width without it. Height and
        width at least {min_size}; 3 channels with pretrained weights
        (unless `adapt_input_channels`).{exact}
    pooling: Only with `include_top=False`: None (4D feature map), `"avg"`
        or `"max"` (global pooling to a 2D tensor).
    classes: Number of classes of the classifier (default {classes}).{classes_rule}
    classifier_activation: Activation of the `predictions` layer; None
        returns logits.{activation_rule}
    name: Name of the model.
{extra}    manifest: Keyword-only. A manifest JSON path (or `Manifest`) merged
        over the shipped one, e.g. to point at a mirror or list your own
        weights.
    offline: Keyword-only. True forbids network access (default: the
        `RESNET_KERAS_OFFLINE` environment variable).
{adapt}
Returns:
    A `keras.Model`.{preprocess}

Raises:
    InvalidArgumentError (a ValueError): an argument breaks a rule; raised
        before any network or disk work.
    UnknownWeightsError (a ValueError): `weights` is no tag and no file.
    FileNotFoundError: `weights` looks like a path that does not exist.
    OfflineError, DownloadError, IntegrityError (OSErrors): the weights
        file could not be had verified.
    WeightsFormatError, WeightsMismatchError (ValueErrors): the weights
        file is unsafe or does not fit the model (model unchanged).

Example:
    >>> import numpy as np
    >>> from resnet_keras.{module} import {fn}
    >>> model = {fn}(weights=None, include_top=False, pooling="avg",
    ...     input_shape=({example_size}, {example_size}, 3))
    >>> model.predict(np.zeros((1, {example_size}, {example_size}, 3)), verbose=0).shape
    (1, {features})
'''

_PRETRAINED = dict(
    weights='None (random initialization), a weights tag from the\n'
    '        manifest (`"imagenet"`), or the path to a weights file (HDF5,\n'
    '        torch state_dict `.pth`, or `.safetensors`).',
    exact="\n        Exactly the default shape with `include_top=True` and pretrained\n"
    "        weights.",
    classes_rule=" 1000 with\n        pretrained weights and `include_top=True`.",
    activation_rule=' None or `"softmax"` with\n        pretrained weights.',
)
_NO_PRETRAINED = dict(
    weights="None (random initialization; no pretrained Keras weights\n"
    "        exist for this model), a weights tag of a manifest passed with\n"
    "        `manifest=`, or the path to a weights file (HDF5, torch\n"
    "        state_dict `.pth`, or `.safetensors`).",
    exact="",
    classes_rule="",
    activation_rule="",
)

SHORTCUT_DOC = '''    shortcut: Keyword-only. Where a block changes shape, `"A"` (the
        default, as in the paper's CIFAR experiments) subsamples the input
        and pads the new channels with zeros: no parameters; `"B"` uses a
        1x1 convolution with stride and BatchNorm (`_0_conv`, `_0_bn`).
'''


ADAPT_DOC = '''    adapt_input_channels: Keyword-only. True loads 3-channel (RGB)
        weights into a model whose input has any number of channels: the
        stem kernel is summed over RGB for 1 channel, else repeated
        (R, G, B, R, ...) to the channels and scaled by 3 / channels
        (timm's rule). Needs `weights`.
'''


def builder_doc(fn, spec: ResNetSpec, title: str, about: str, *, keras_name: bool) -> str:
    """The docstring of builder `fn`, filled from its spec and signature.

    `keras_name`: the builder is a drop-in for `keras.applications.<fn>`
    and has pretrained weights in the shipped manifest.
    """
    module = fn.__module__.removeprefix("resnet_keras.")
    return _TEMPLATE.format(
        title=title,
        dropin=f", a drop-in for `keras.applications.{fn.__name__}`" if keras_name else "",
        about=about,
        fn=fn.__name__,
        module=module,
        size=spec.default_size,
        min_size=spec.min_size,
        classes=spec.classes,
        extra=SHORTCUT_DOC if "shortcut" in inspect.signature(fn).parameters else "",
        adapt=ADAPT_DOC if "adapt_input_channels" in inspect.signature(fn).parameters else "",
        preprocess=f" Preprocess its inputs with\n    `resnet_keras.{module}.preprocess_input`." if keras_name else "",
        example_size=max(spec.min_size, 64 if keras_name else 32),
        features=spec.widths[-1] * spec.expansion,
        **(_PRETRAINED if keras_name else _NO_PRETRAINED),
    )
