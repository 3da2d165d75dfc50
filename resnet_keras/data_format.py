"""Where the channels are: the one data-format rule of the package.

Keras' `image_data_format` is "channels_last" (images are (H, W, C), batches
(N, H, W, C)) or "channels_first" ((C, H, W), (N, C, H, W)). Every module
that needs a channel axis, a spatial size or an input shape asks here.

Keras is imported only by `current()`, so the command line can describe
models without loading it.
"""

from __future__ import annotations

from typing import Sequence

from .errors import InvalidArgumentError

CHANNELS_LAST = "channels_last"
CHANNELS_FIRST = "channels_first"
FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)


def current() -> str:
    """The global `keras.config.image_data_format()`."""
    import keras

    return keras.config.image_data_format()


def check(data_format: str | None) -> str:
    """`data_format` if it is one of `FORMATS`, the global one for None."""
    if data_format is None:
        return current()
    if data_format not in FORMATS:
        raise InvalidArgumentError(
            "`data_format` must be 'channels_first' or 'channels_last'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format: str, *, batched: bool = True) -> int:
    """The channel axis of a batch (1 or -1), or of one image (0 or -1)."""
    if data_format == CHANNELS_FIRST:
        return 1 if batched else 0
    return -1


def spatial_dims(shape: Sequence, data_format: str, *, batched: bool = True) -> tuple:
    """(height, width) of a batch shape, or of one image's shape."""
    start = (1 if batched else 0) + (data_format == CHANNELS_FIRST)
    return tuple(shape[start:start + 2])


def image_shape(size: int | None, data_format: str, channels: int = 3) -> tuple:
    """The shape of one square image: (C, H, W) or (H, W, C)."""
    if data_format == CHANNELS_FIRST:
        return (channels, size, size)
    return (size, size, channels)


def layout(data_format: str) -> str:
    """How one image's dimensions are ordered, for messages: "(H, W, C)"."""
    return "(C, H, W)" if data_format == CHANNELS_FIRST else "(H, W, C)"
