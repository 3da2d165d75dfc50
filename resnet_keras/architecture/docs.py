"""Builder docstrings, written once and filled per model.

Every builder shares the argument text; its defaults come from its
signature and spec, and what `weights=` offers from the shipped manifest
(so a docstring never says "no weights" of a model that has some).
"""

from __future__ import annotations

import inspect
import textwrap

from .signatures import weights_extra
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
    >>> from {module} import {fn}
    >>> model = {fn}(weights=None, include_top=False, pooling="avg",
    ...     input_shape=({example_size}, {example_size}, 3))
    >>> model.predict(np.zeros((1, {example_size}, {example_size}, 3)), verbose=0).shape
    (1, {features})
'''

# Argument rules that hold only with manifest weights (keras' rules for "imagenet").
_PRETRAINED_RULES = dict(
    exact="\n        Exactly the default shape with `include_top=True` and pretrained\n"
    "        weights.",
    classes_rule=" 1000 with\n        pretrained weights and `include_top=True`.",
    activation_rule=' None or `"softmax"` with\n        pretrained weights.',
)
_NO_RULES = dict.fromkeys(_PRETRAINED_RULES, "")


def _tag_text(model: str, tag: str, manifest) -> str:
    entry = manifest.entry(model, tag)
    notes = [entry.source or "no source given"]
    if entry.default and len(manifest.tags(model)) > 1:
        notes.append("the default")
    if extra := weights_extra(entry):
        notes.append(f"needs the `{extra}` extra")
    return f'`"{tag}"` ({"; ".join(notes)})'


def weights_doc(spec: ResNetSpec, default: str | None) -> str:
    """The `weights` argument's text: the default, and what the shipped manifest offers."""
    from ..weights.manifest import shipped_manifest
    from ..weights.manifest.records import IMAGENET_TAG

    manifest, model = shipped_manifest(), spec.name
    tags = manifest.tags(model)
    shown = "None" if default is None else f'`"{default}"`'
    text = (
        "None (random initialization), a weights tag, or the path to a weights file "
        f"(HDF5, torch state_dict `.pth`, or `.safetensors`). Default: {shown}. "
    )
    if not tags:
        text += "The shipped manifest has no weights for this model; `manifest=` can add some."
    else:
        text += f"Tags of the shipped manifest: {', '.join(_tag_text(model, t, manifest) for t in tags)}."
        if IMAGENET_TAG not in tags:
            text += f' `"{IMAGENET_TAG}"` selects `"{manifest.default_tag(model)}"`.'
    return textwrap.fill(text, width=76, initial_indent=" " * 4 + "weights: ",
                         subsequent_indent=" " * 8).removeprefix(" " * 4 + "weights: ")


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
    """The docstring of builder `fn`, filled from its spec, signature and the shipped manifest.

    `keras_name`: the builder is a drop-in for `keras.applications.<fn>`.
    """
    from ..weights.manifest import shipped_manifest

    parameters = inspect.signature(fn).parameters
    pretrained = bool(shipped_manifest().tags(spec.name))
    return _TEMPLATE.format(
        title=title,
        dropin=f", a drop-in for `keras.applications.{fn.__name__}`" if keras_name else "",
        about=about,
        fn=fn.__name__,
        module=fn.__module__,
        size=spec.default_size,
        min_size=spec.min_size,
        classes=spec.classes,
        weights=weights_doc(spec, parameters["weights"].default),
        extra=SHORTCUT_DOC if "shortcut" in parameters else "",
        adapt=ADAPT_DOC if "adapt_input_channels" in parameters else "",
        preprocess=f" Preprocess its inputs with\n    `{fn.__module__}.preprocess_input`." if pretrained else "",
        example_size=max(spec.min_size, 64 if keras_name else 32),
        features=spec.widths[-1] * spec.expansion,
        **(_PRETRAINED_RULES if pretrained else _NO_RULES),
    )
