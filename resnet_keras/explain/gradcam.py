"""Grad-CAM (Selvaraju et al. 2017): where in the image a class' evidence is.

For a class c and the feature map A of the last convolutional stage:
alpha_k = mean over positions of d(score_c)/d(A_k), one weight per channel;
map = ReLU(sum_k alpha_k A_k), upsampled (bilinear) to the input size and
divided by its maximum, so it lies in [0, 1] (all zeros where the class
has no positive evidence anywhere).

The score is the class' logit: an output softmax or sigmoid is taken off
(`graph`). Only the layers after A are differentiated, so a batch costs one
forward pass and a backward pass through the head, on TensorFlow, JAX and
PyTorch alike; the channel weights and the map are computed in float32
whatever the model's dtype policy.
"""

from __future__ import annotations

import numpy as np

import keras

from . import graph
from ..architecture.specs import CHANNELS_FIRST, spatial_dims
from ..errors import InvalidArgumentError, UnsupportedBackendError

DEFAULT_BATCH_SIZE = 32


def grad_cam(model: keras.Model, images, class_index=None, *, layer: str | None = None,
             batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Grad-CAM heatmaps of `images`, one per image (and per class asked for).

    Args:
        model: A resnet_keras or keras.applications ResNet with a classifier,
            or a model built on one (a new head on a zoo backbone, nested or
            flat, a Sequential): its one output holds class scores.
        images: A batch as the model takes it (preprocessed, in the model's
            data format and, for a fixed-size model, at its size): NumPy or
            a backend tensor of shape (N, H, W, C) or (N, C, H, W).
        class_index: Which class to explain. None: each image's predicted
            class. An int: that class for every image. N ints: one per image.
            An (N, K) array: K classes per image (e.g. the top-k).
        layer: None (the last feature stage of the model's ResNet), a stage
            name such as `"C4"` (see `feature_info`), or a layer name.
        batch_size: Images per forward pass.

    Returns:
        float32 heatmaps in [0, 1] at the images' height and width: (N, H, W),
        or (N, K, H, W) for an (N, K) `class_index`.

    Raises:
        InvalidArgumentError: the model holds no convolutional stage to
            explain, an image has another size or channel count than the
            model takes, holds NaN or infinity, or a class index is not a
            class of the model.
        UnsupportedBackendError: the Keras backend cannot compute gradients
            (numpy, openvino).

    Example:
        >>> import numpy as np, resnet_keras
        >>> model = resnet_keras.ResNet20(input_shape=(32, 32, 3))
        >>> x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
        >>> resnet_keras.grad_cam(model, x).shape
        (2, 32, 32)
        >>> resnet_keras.grad_cam(model, x, [[3, 5], [1, 2]]).shape
        (2, 2, 32, 32)
    """
    gradient = _gradient_function()
    cut = graph.split(model, layer)
    images = _checked_images(images, model)
    classes, per_image = _checked_classes(class_index, len(images), cut.classes)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidArgumentError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    size = spatial_dims(images.shape, cut.data_format)
    heatmaps = np.zeros((len(images), 1 if classes is None else classes.shape[1], *size), np.float32)
    for start in range(0, len(images), batch_size):
        batch = slice(start, start + batch_size)
        a, outputs = cut.features.predict_on_batch(images[batch])
        a = np.asarray(a, dtype=np.float32)
        wanted = classes[batch] if classes is not None else np.argmax(outputs, axis=-1)[:, None]
        n, k = wanted.shape
        tiled = np.repeat(a, k, axis=0)  # every (image, class) pair: one item of one backward pass
        cams = _cam(tiled, gradient(cut, tiled, wanted.reshape(-1)), cut.data_format)
        heatmaps[batch] = _upsampled(cams.reshape(n, k, *cams.shape[1:]), size)
    return heatmaps if per_image else heatmaps[:, 0]


def _checked_images(images, model: keras.Model) -> np.ndarray:
    if not isinstance(images, np.ndarray) and keras.ops.is_tensor(images):
        images = keras.ops.convert_to_numpy(images)
    images = np.asarray(images)
    if images.dtype.kind not in "fiu" or images.dtype == np.bool_:
        raise InvalidArgumentError(
            f"`images` must be numbers (a float batch, preprocessed as the model expects). "
            f"Received: images of dtype {images.dtype}"
        )
    expected = tuple(model.inputs[0].shape)
    if images.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(images.shape[1:], expected[1:])
    ):
        shape = ", ".join(["N", *("any" if d is None else str(d) for d in expected[1:])])
        hint = " Add a batch axis: images[None]." if images.ndim == len(expected) - 1 else ""
        raise InvalidArgumentError(
            f"`images` must be a batch of shape ({shape}), as {model.name} takes it.{hint} "
            f"Received: images.shape={images.shape}. Resize the images to the model's input "
            "size (resnet_keras.images.load_batch does), or build the model for their size."
        )
    images = images.astype(np.float32, copy=False)
    finite = np.isfinite(images).all(axis=tuple(range(1, images.ndim)))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidArgumentError(
            "`images` must hold finite numbers: no NaN or infinity. Received: non-finite values "
            f"in image(s) {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''} of {len(images)}. "
            "Check the decoding and preprocessing of those images."
        )
    return images


def _checked_classes(class_index, count: int, classes: int) -> tuple[np.ndarray | None, bool]:
    """(an (N, K) int array or None for the predicted class, whether K is per image)."""
    if class_index is None:
        return None, False
    index = np.asarray(class_index)
    if index.dtype.kind not in "iu" or index.ndim > 2:
        raise InvalidArgumentError(
            "`class_index` must be None, an int, one int per image, or an (images, k) array of "
            f"ints. Received: class_index={_short(class_index)}"
        )
    if index.size and (index.min() < 0 or index.max() >= classes):
        raise InvalidArgumentError(
            f"`class_index` must hold classes of the model, 0 to {classes - 1}. "
            f"Received: class_index={_short(class_index)}"
        )
    if index.ndim == 0:
        return np.full((count, 1), int(index)), False
    if index.shape[0] != count or (index.ndim == 2 and index.shape[1] < 1):
        raise InvalidArgumentError(
            f"`class_index` must give one entry per image ({count} images). "
            f"Received: class_index of shape {index.shape}"
        )
    return (index, True) if index.ndim == 2 else (index[:, None], False)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _cam(a: np.ndarray, grads: np.ndarray, data_format: str) -> np.ndarray:
    """ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of the gradient: (N, h, w)."""
    if data_format == CHANNELS_FIRST:  # (N, C, h, w)
        weights = grads.mean(axis=(2, 3))
        cam = np.einsum("nc,nchw->nhw", weights, a)
    else:  # (N, h, w, C)
        weights = grads.mean(axis=(1, 2))
        cam = np.einsum("nc,nhwc->nhw", weights, a)
    return np.maximum(cam, 0.0)


def _upsampled(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, K, h, w) maps resized (bilinear) to `size` and scaled to [0, 1] each."""
    n, k, h, w = cams.shape
    flat = cams.reshape(n * k, h, w, 1)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(flat, size, interpolation="bilinear", data_format="channels_last")
    )[..., 0].astype(np.float32)
    peak = resized.reshape(n * k, -1).max(axis=1)
    scale = np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)  # no evidence: zeros
    return np.clip(resized * scale[:, None, None], 0.0, 1.0).reshape(n, k, *size)


# --- d(score of the wanted class)/dA, per Keras backend ---------------------------------------

def _gradient_function():
    backend = keras.backend.backend()
    function = _GRADIENTS.get(backend)
    if function is None:
        raise UnsupportedBackendError(
            f"grad_cam needs gradients, which the {backend!r} Keras backend does not compute. "
            f"Received: KERAS_BACKEND={backend}. Use tensorflow, jax or torch."
        )
    return function


def _tensorflow_gradient(cut: graph.Split, a: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    if "tensorflow" not in cut.compiled:  # traced once per split; variables are read, not copied

        @tf.function(reduce_retracing=True)
        def gradient(a, wanted):
            with tf.GradientTape() as tape:
                tape.watch(a)
                picked = _picked(cut.scores(a), wanted)
            return tape.gradient(picked, a)

        cut.compiled["tensorflow"] = gradient
    return cut.compiled["tensorflow"](tf.constant(a), tf.constant(wanted, dtype=tf.int32)).numpy()


def _jax_gradient(cut: graph.Split, a: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    import jax

    return np.asarray(jax.grad(lambda x: _picked(cut.scores(x), wanted))(jax.numpy.asarray(a)))


def _torch_gradient(cut: graph.Split, a: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    import torch

    x = keras.ops.convert_to_tensor(a).detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(_picked(cut.scores(x), wanted), x)
    return grads.detach().cpu().numpy()


def _picked(scores, wanted):
    """Sum over the batch of each item's wanted score: its gradient is per item, as
    the model runs in inference mode (no batch statistics)."""
    index = keras.ops.expand_dims(keras.ops.cast(keras.ops.convert_to_tensor(wanted), "int32"), 1)
    return keras.ops.sum(keras.ops.take_along_axis(scores, index, axis=1))


_GRADIENTS = {"tensorflow": _tensorflow_gradient, "jax": _jax_gradient, "torch": _torch_gradient}
