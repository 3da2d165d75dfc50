"""What a weight value must be, whatever file it comes from: one rule for every reader.

HDF5 datasets (`hdf5`), `.pth` tensors and `.safetensors` arrays (`torch_files`,
mapped by `state_dict`) all pass through here, value by value, before the
first assignment:

- the value is dense (not sparse, quantized, nested or without data) and
  its dtype is float16, bfloat16, float32 or float64; integer, bool,
  complex, string and other data is refused (checked on the dtype alone, so
  refused data is never read);
- it is converted to float32, then to the dtype of the variable it goes to,
  and must be finite after each conversion: NaN, Inf, and values beyond
  the target's range (a float64 1e39 becomes Inf in float32) are refused.

The readers report every problem of a file at once (`refuse`): a value that
breaks this rule makes a WeightsFormatError, naming the file and the key or
dataset; a file whose values are fine but do not fit the model (shapes,
counts, keys) a WeightsMismatchError. Either way nothing was assigned.

Pretrained stem weights for inputs that are not RGB (`adapt_input_channels`)
follow timm's rule (`adapt_input_conv`), restated: a stem kernel trained on
3 channels becomes one for N channels by
- N = 1: the sum over the 3 input channels (a gray image that is R = G = B
  then gives exactly the RGB model's output);
- N != 3: the RGB kernel repeated cyclically (R, G, B, R, G, ...) to N
  channels and scaled by 3 / N, so that activations keep their scale.
Kernels are in Keras' layout (height, width, in, out) whatever the data
format, so channels_first needs nothing else. Computed in float32.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ...errors import WeightsFormatError, WeightsMismatchError

MAX_REPORTED = 20  # problems listed in one message

LOADABLE_DTYPES = ("float16", "bfloat16", "float32", "float64")
# safetensors' dtype names (its format spec) as NumPy's, so that every reader
# names a dtype alike; names not listed here are kept as they are.
SAFETENSORS_DTYPES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64",
}


class UnusableValue(ValueError):
    """Why one value breaks the rule; the reader adds the file and the key."""


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', 'int64', ... for a NumPy, torch, Keras or safetensors dtype."""
    if isinstance(dtype, str):
        return SAFETENSORS_DTYPES.get(dtype, dtype)
    if isinstance(dtype, np.dtype):
        return dtype.name  # '>f4' is 'float32' too; ml_dtypes' bfloat16 is 'bfloat16'
    return str(dtype).removeprefix("torch.")


def check_dtype(dtype: Any) -> None:
    """Raise UnusableValue unless `dtype` is one of LOADABLE_DTYPES (nothing is read)."""
    name = dtype_name(dtype)
    if name not in LOADABLE_DTYPES:
        raise UnusableValue(
            f"dtype {name} is not floating point (float16, bfloat16, float32 or float64 load)"
        )


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.is_nested:
        raise UnusableValue("is a nested tensor; save each tensor dense")
    if tensor.layout is not torch.strided:
        layout = str(tensor.layout).removeprefix("torch.")
        raise UnusableValue(f"is a {layout} tensor; save it dense (tensor.to_dense())")
    if tensor.is_quantized:
        raise UnusableValue(
            f"is a quantized tensor ({dtype_name(tensor.dtype)}); save it dequantized "
            "(tensor.dequantize())"
        )
    if tensor.device.type != "cpu":
        raise UnusableValue(f"is a tensor on device {tensor.device.type!r} that holds no data here")
    check_dtype(tensor.dtype)
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; widening is exact
        tensor = tensor.float()
    return tensor.numpy()


def _as_numpy(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")  # a torch tensor can only exist once torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        return _torch_to_numpy(value)
    check_dtype(value.dtype)
    return np.asarray(value)


def _converted(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # an overflow is refused below, not warned about
        out = array.astype(dtype, copy=False)
    if not np.all(np.isfinite(out)):
        if not np.all(np.isfinite(array)):
            raise UnusableValue("contains NaN or Inf")
        largest = float(np.max(np.abs(array.astype(np.float64))))
        raise UnusableValue(
            f"holds values beyond the range of {name} (largest magnitude {largest:.4g})"
        )
    return out


def as_float32(value: Any) -> np.ndarray:
    """The value (NumPy array or torch tensor) as a finite float32 array, or UnusableValue."""
    return _converted(_as_numpy(value), np.dtype(np.float32), "float32")


def as_variable_dtype(array: np.ndarray, dtype: Any) -> np.ndarray:
    """A float32 array cast to a variable's dtype (float16 under a float16 policy), still finite."""
    name = dtype_name(dtype)
    if name == "float32":
        return array
    if name == "bfloat16":
        import ml_dtypes  # installed with keras

        target = np.dtype(ml_dtypes.bfloat16)
    else:
        target = np.dtype(name)
    return _converted(array, target, f"the model's {name}")


def refuse(where, model_name: str, unusable: list[str], mismatched: list[str]) -> None:
    """Raise for all the problems found in a file, if any; nothing was assigned."""
    problems = unusable + mismatched
    if not problems:
        return
    listed = "; ".join(problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    summary = f"({len(problems)} problems, model unchanged): {listed}" + (
        f"; and {more} more" if more > 0 else ""
    )
    if unusable:
        raise WeightsFormatError(
            f"{where} holds values that cannot be loaded into model {model_name!r} {summary}. "
            "Weights must be dense float16, bfloat16, float32 or float64 arrays of finite "
            "values; fix or re-export the file."
        )
    raise WeightsMismatchError(f"{where} does not fit model {model_name!r} {summary}")


# --------------------------------------------------------------------------
# Stem kernels for inputs that are not RGB (timm's rule, above)

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


ADAPT_HINT = (
    " The file's stem takes 3 (RGB) channels: pass adapt_input_channels=True "
    "to adapt it to the model's input channels."
)
