"""ImageNet preprocessing and decoding, numerically identical to keras.

`preprocess_input` follows keras also where keras is surprising: a writable
floating-point NumPy array is written over in place *and* returned (keras
#8741), so a script that ignores the return value gets the same numbers as
with keras. Integer, read-only and tensor inputs are not changed; the result
is new. Differences on purpose: an input without exactly 3 channels is a
typed error in every mode (keras broadcasts, truncates or raises IndexError),
and the class index ships inside the package, so decoding needs no network.

Keras is imported on first use, so that the command line can describe
preprocessing without loading it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .architecture.specs import channel_axis, check_data_format
from .errors import InvalidArgumentError

CLASS_INDEX_PATH = Path(__file__).parent / "data" / "imagenet_class_index.json"
NUM_CLASSES = 1000
# Per-channel constants of each mode, in the channel order the mode works in.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch")
CHANNELS = 3


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidArgumentError(
            f"`mode` must be one of {MODES}. Received: mode={mode!r}"
        )


def _check_channels(shape, data_format: str, mode: str) -> int:
    """The channel axis of `shape`; raises unless it holds 3 channels (or is unknown)."""
    shape = tuple(shape)
    # keras' rule: one image if 3D, else a batch
    axis = channel_axis(data_format, batched=len(shape) != 3)
    channels = shape[axis] if len(shape) >= 3 else None
    if len(shape) < 3 or channels not in (CHANNELS, None):
        raise InvalidArgumentError(
            f"`x` must be an RGB image or batch with {CHANNELS} channels on its channel "
            f"axis (axis {axis} for data_format={data_format!r}, mode={mode!r}). "
            f"Received: x.shape={shape}, {channels if len(shape) >= 3 else 'no'} channels. "
            "Convert grey or RGBA images to RGB first (e.g. "
            "`keras.utils.load_img(path, color_mode='rgb')`), or pass the data_format "
            "the array is in."
        )
    return axis


def _channel_shape(ndim: int, axis: int) -> tuple:
    """Broadcast shape of a per-channel constant for channel axis `axis`."""
    if axis == -1:
        return (CHANNELS,)
    return (CHANNELS,) + (1,) * (ndim - axis - 1)


def preprocess_input(x, data_format=None, mode: str = "caffe"):
    """Scale a batch (or one image) of RGB values in [0, 255] for a model.

    Like keras, a writable floating-point NumPy array is written over in
    place and returned (in mode "caffe" the result is a BGR view of the
    same memory, as keras returns it). Integer arrays are converted to
    `keras.config.floatx()` first, so the input stays untouched; read-only
    arrays and tensors are not changed either.

    Args:
        x: NumPy array or tensor, 3D or 4D, with 3 (RGB) channels.
        data_format: `"channels_last"`, `"channels_first"` or None for the
            global `keras.config.image_data_format()`.
        mode: `"caffe"` (RGB->BGR, minus the ImageNet means; ResNet V1),
            `"tf"` (to [-1, 1]; ResNet V2) or `"torch"` (to [0, 1], then
            ImageNet mean/std).

    Returns:
        The preprocessed array or tensor, keras' numbers exactly.

    Raises:
        InvalidArgumentError: `mode` or `data_format` is unknown, or the
            channel axis does not hold 3 channels (grey or RGBA input).
    """
    _check_mode(mode)
    data_format = check_data_format(data_format)
    axis = _check_channels(x.shape, data_format, mode)
    if isinstance(x, np.ndarray):
        return _preprocess_numpy(x, axis, mode)
    return _preprocess_tensor(x, axis, mode)


def _preprocess_numpy(x: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """keras' arithmetic, in place on `x` where keras writes in place."""
    import keras

    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(keras.config.floatx())
    elif not x.flags.writeable:
        x = x.copy()
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    shape = _channel_shape(x.ndim, axis)
    if mode == "caffe":
        x = np.flip(x, axis=axis)  # RGB -> BGR: a view, as keras' x[..., ::-1]
        x -= np.reshape(np.array(CAFFE_MEAN_BGR), shape).astype(x.dtype)
        return x
    x /= 255.0
    x -= np.reshape(np.array(TORCH_MEAN), shape).astype(x.dtype)
    x /= np.reshape(np.array(TORCH_STD), shape).astype(x.dtype)
    return x


def _preprocess_tensor(x, axis: int, mode: str):
    import keras

    ops = keras.ops
    if not keras.backend.standardize_dtype(x.dtype).startswith(("float", "bfloat")):
        x = ops.cast(x, keras.config.floatx())
    dtype = keras.backend.standardize_dtype(x.dtype)
    if mode == "tf":
        return x / 127.5 - 1.0
    shape = _channel_shape(len(x.shape), axis)

    def const(values):
        return ops.convert_to_tensor(np.reshape(np.array(values), shape), dtype=dtype)

    if mode == "caffe":
        return ops.flip(x, axis=axis) - const(CAFFE_MEAN_BGR)
    return (x / 255.0 - const(TORCH_MEAN)) / const(TORCH_STD)


@functools.lru_cache(maxsize=1)
def class_index() -> dict[str, list[str]]:
    """The ImageNet class index: '0' -> ['n01440764', 'tench'], ..."""
    with open(CLASS_INDEX_PATH, encoding="utf-8") as f:
        return json.load(f)


def decode_predictions(preds, top: int = 5):
    """Turn a batch of ImageNet scores into (class_id, name, score) lists.

    Args:
        preds: Array or tensor of shape (samples, 1000).
        top: How many classes to return per sample, best first.

    Returns:
        One list of `(wordnet_id, class_name, score)` tuples per sample.
    """
    import keras

    preds = keras.ops.convert_to_numpy(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise InvalidArgumentError(
            "`decode_predictions` expects a batch of ImageNet predictions of "
            f"shape (samples, {NUM_CLASSES}). Received: preds.shape={preds.shape}"
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InvalidArgumentError(
            f"`top` must be a positive integer. Received: top={top!r}"
        )
    index = class_index()
    results = []
    for pred in preds:
        best = pred.argsort()[-top:][::-1]
        result = [tuple(index[str(i)]) + (pred[i],) for i in best]
        result.sort(key=lambda item: item[2], reverse=True)
        results.append(result)
    return results
