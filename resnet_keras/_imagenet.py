"""ImageNet preprocessing and decoding, numerically identical to keras.

Differences on purpose: a NumPy input is never written over (keras edits
float arrays in place, keras #8741), and the class index ships inside the
package, so decoding needs no network.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import keras
import numpy as np

from .errors import InvalidArgumentError

CLASS_INDEX_PATH = Path(__file__).parent / "data" / "imagenet_class_index.json"
NUM_CLASSES = 1000
# Per-channel constants of each mode, in the channel order the mode works in.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch")


def _check(mode: str, data_format):
    if mode not in MODES:
        raise InvalidArgumentError(
            f"`mode` must be one of {MODES}. Received: mode={mode!r}"
        )
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in ("channels_first", "channels_last"):
        raise InvalidArgumentError(
            "`data_format` must be 'channels_first' or 'channels_last'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def _channel_shape(ndim: int, data_format: str) -> tuple:
    """Broadcast shape of a per-channel constant."""
    if data_format == "channels_first":
        return (3,) + (1,) * (2 if ndim == 3 else ndim - 2)
    return (3,)


def preprocess_input(x, data_format=None, mode: str = "caffe"):
    """Scale a batch (or one image) of RGB values in [0, 255] for a model.

    Args:
        x: NumPy array or tensor, 3D or 4D, 3 colour channels.
        data_format: `"channels_last"`, `"channels_first"` or None for the
            global `keras.config.image_data_format()`.
        mode: `"caffe"` (RGB->BGR, minus the ImageNet means; ResNet V1),
            `"tf"` (to [-1, 1]; ResNet V2) or `"torch"` (to [0, 1], then
            ImageNet mean/std).

    Returns:
        A new array or tensor; a NumPy input is left untouched. Integer
        inputs become `keras.config.floatx()`.
    """
    data_format = _check(mode, data_format)
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(keras.config.floatx())
        xp, dtype = np, x.dtype
    else:
        xp = keras.ops
        if not keras.backend.standardize_dtype(x.dtype).startswith(("float", "bfloat")):
            x = keras.ops.cast(x, keras.config.floatx())
        dtype = keras.backend.standardize_dtype(x.dtype)

    if mode == "tf":
        return x / 127.5 - 1.0
    channel_axis = 1 if data_format == "channels_first" and len(x.shape) == 4 else (
        0 if data_format == "channels_first" else -1
    )
    shape = _channel_shape(len(x.shape), data_format)
    if mode == "caffe":
        x = xp.flip(x, axis=channel_axis)  # RGB -> BGR
        mean = np.reshape(np.array(CAFFE_MEAN_BGR), shape)
        return x - _const(mean, dtype, xp)
    x = x / 255.0
    mean = np.reshape(np.array(TORCH_MEAN), shape)
    std = np.reshape(np.array(TORCH_STD), shape)
    return (x - _const(mean, dtype, xp)) / _const(std, dtype, xp)


def _const(value: np.ndarray, dtype, xp):
    if xp is np:
        return value.astype(dtype)
    return keras.ops.convert_to_tensor(value, dtype=dtype)


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
