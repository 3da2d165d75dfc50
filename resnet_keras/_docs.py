"""The builders' shared docstring, written once and filled per model."""

BUILDER_DOC = '''Instantiate {title}, a drop-in for `keras.applications.{fn}`.

{about}

Args:
    include_top: Whether to include the classifier (`avg_pool` +
        `predictions`).
    weights: None (random initialization), a weights tag from the
        manifest (`"imagenet"`), or the path to an HDF5 weights file.
    input_tensor: Optional Keras tensor (output of `keras.Input`) to use
        as the model input.
    input_shape: Optional shape tuple (or list), e.g. `(224, 224, 3)`
        (`(3, 224, 224)` with channels_first). Height and width at least
        32; exactly (224, 224, 3) with `include_top=True` and pretrained
        weights; 3 channels with pretrained weights.
    pooling: Only with `include_top=False`: None (4D feature map), `"avg"`
        or `"max"` (global pooling to a 2D tensor).
    classes: Number of classes of the classifier; 1000 with pretrained
        weights and `include_top=True`.
    classifier_activation: Activation of the `predictions` layer; None or
        `"softmax"` with pretrained weights. None returns logits.
    name: Name of the model.
    manifest: Keyword-only. A manifest JSON path (or `Manifest`) merged
        over the shipped one, e.g. to point at a mirror.
    offline: Keyword-only. True forbids network access (default: the
        `RESNET_KERAS_OFFLINE` environment variable).

Returns:
    A `keras.Model`. Preprocess its inputs with
    `resnet_keras.{module}.preprocess_input`.

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
    ...     input_shape=(64, 64, 3))
    >>> model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
    (1, 2048)
'''


def document(title: str, about: str, module: str):
    """Decorator that gives a builder the shared docstring."""

    def apply(fn):
        fn.__doc__ = BUILDER_DOC.format(
            title=title, fn=fn.__name__, about=about, module=module
        )
        return fn

    return apply
