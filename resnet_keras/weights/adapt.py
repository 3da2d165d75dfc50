"""Pretrained stem weights for inputs that are not RGB (`adapt_input_channels`).

timm's rule (`adapt_input_conv`), restated: a stem kernel trained on 3
channels becomes one for N channels by
- N = 1: the sum over the 3 input channels (a gray image that is R = G = B
  then gives exactly the RGB model's output);
- N != 3: the RGB kernel repeated cyclically (R, G, B, R, G, ...) to N
  channels and scaled by 3 / N, so that activations keep their scale.
Kernels are in Keras' layout (height, width, in, out) whatever the data
format, so channels_first needs nothing else. Computed in float32.
"""

from __future__ import annotations

import numpy as np

RGB = 3
INPUT_AXIS = 2  # Keras Conv2D kernels: (height, width, in, out)


def can_adapt(file_shape, model_shape) -> bool:
    """True where a 3-channel conv kernel differs from the model's only in its input channels."""
    file_shape, model_shape = tuple(file_shape), tuple(model_shape)
    return (
        len(file_shape) == len(model_shape) == 4
        and file_shape[INPUT_AXIS] == RGB
        and model_shape[INPUT_AXIS] != RGB
        and file_shape[:INPUT_AXIS] + file_shape[INPUT_AXIS + 1:]
        == model_shape[:INPUT_AXIS] + model_shape[INPUT_AXIS + 1:]
    )


def adapt_stem_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A (h, w, 3, out) kernel adapted to (h, w, channels, out) by timm's rule."""
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 4 or kernel.shape[INPUT_AXIS] != RGB or channels < 1:
        raise ValueError(f"expected a (h, w, 3, out) kernel and channels >= 1, got {kernel.shape}, {channels}")
    if channels == 1:
        return kernel.sum(axis=INPUT_AXIS, keepdims=True)
    order = [i % RGB for i in range(channels)]  # R, G, B, R, G, ...
    return kernel[:, :, order, :] * np.float32(RGB / channels)


HINT = (
    " The file's stem takes 3 (RGB) channels: pass adapt_input_channels=True "
    "to adapt it to the model's input channels."
)
