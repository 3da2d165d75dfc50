"""Docstrings of the builders beyond keras (ResNet18/34, CIFAR nets).

The keras-compatible builders use `_docs.BUILDER_DOC`; these models differ
in defaults (no pretrained weights, CIFAR input size and classes) and in
their keyword-only options, so their text is filled from the spec.
"""

from __future__ import annotations

from ._specs import SPECS

ZOO_DOC = '''Instantiate {title}.

{about}

Same signature, argument rules and layer naming scheme as the
keras.applications builders; only the defaults differ where the model
does (see below).

Args:
    include_top: Whether to include the classifier (`avg_pool` +
        `predictions`).
    weights: None (random initialization, the default: no pretrained
        Keras weights exist for this model), a weights tag of a manifest
        passed with `manifest=`, or the path to an HDF5 weights file.
    input_tensor: Optional Keras tensor (output of `keras.Input`) to use
        as the model input.
    input_shape: Optional shape tuple (or list). None means
        ({size}, {size}, 3) with the top (any height and width without
        it). Height and width at least {min_size}.
    pooling: Only with `include_top=False`: None (4D feature map), `"avg"`
        or `"max"` (global pooling to a 2D tensor).
    classes: Number of classes of the classifier (default {classes}).
    classifier_activation: Activation of the `predictions` layer; None
        returns logits.
    name: Name of the model.
{extra}    manifest: Keyword-only. A manifest JSON path (or `Manifest`) merged
        over the shipped one, e.g. one that lists your own weights.
    offline: Keyword-only. True forbids network access (default: the
        `RESNET_KERAS_OFFLINE` environment variable).

Returns:
    A `keras.Model`.

Raises:
    InvalidArgumentError (a ValueError): an argument breaks a rule; raised
        before any network or disk work.
    UnknownWeightsError (a ValueError): `weights` is no tag and no file
        (`weights="imagenet"` names the tags that do exist: none).

Example:
    >>> import numpy as np
    >>> from resnet_keras.{module} import {fn}
    >>> model = {fn}(include_top=False, pooling="avg",
    ...     input_shape=({example_size}, {example_size}, 3))
    >>> model.predict(np.zeros((1, {example_size}, {example_size}, 3)), verbose=0).shape
    (1, {features})
'''

SHORTCUT_DOC = '''    shortcut: Keyword-only. Where a block changes shape, `"A"` (the
        default, as in the paper's CIFAR experiments) subsamples the input
        and pads the new channels with zeros: no parameters; `"B"` uses a
        1x1 convolution with stride and BatchNorm (`_0_conv`, `_0_bn`).
'''


def document(key: str, title: str, about: str, module: str, *, shortcut: bool = False):
    """Decorator that gives a zoo builder its docstring, filled from its spec."""
    spec = SPECS[key]

    def apply(fn):
        fn.__doc__ = ZOO_DOC.format(
            title=title,
            about=about,
            fn=fn.__name__,
            module=module,
            size=spec.default_size,
            min_size=spec.min_size,
            classes=spec.classes,
            extra=SHORTCUT_DOC if shortcut else "",
            example_size=max(spec.min_size, 32),
            features=spec.widths[-1] * spec.expansion,
        )
        return fn

    return apply
