"""The model side of an extraction: what identifies it, how a file becomes
its input, and the one function that calls it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .store import Settings
from ..images import preprocess, read_pixels

if TYPE_CHECKING:
    from ..weights.resolve import Resolved


def weights_hash(resolved: Resolved) -> str:
    """The hash of the weights file the model loads ("none" for random weights).

    A manifest tag carries its file's hash (checked when it is loaded); a
    local file is hashed here, so a rerun with another file of the same
    name refuses to mix.
    """
    if resolved.file is not None:
        return resolved.file.hash
    if resolved.path is None:
        return "none"
    digest = hashlib.sha256()
    with open(resolved.path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def settings_for(resolved: Resolved, *, pooling: str, size: int | None, precision: str) -> Settings:
    side = size or resolved.input_size  # the rule of architecture.build.build_pooled
    return Settings(
        model=resolved.spec.name,
        weights=resolved.weights_label,
        weights_hash=weights_hash(resolved),
        pooling=pooling,
        image_size=(side, side),
        preprocessing=resolved.preprocessing,
        precision=precision,
    )


def model_input(path: str, size: tuple[int, int], preprocessing: str | None) -> tuple[np.ndarray, str]:
    """(pixels ready for the model, "") for a readable file, else (zeros, reason).

    `read_pixels` then `preprocess`: the rules `classify` and `features`
    use, one image at a time (both are per-pixel, so a batch of these is
    exactly what `preprocess(load_batch(...))` gives).
    """
    pixels = read_pixels(path, size)
    if isinstance(pixels, str):
        return np.zeros((*size, 3), np.float32), pixels
    return np.ascontiguousarray(preprocess(pixels, preprocessing), np.float32), ""


def _predictor_class():
    """`resnet_keras.Predictor` (the performance issue's runtime picker), if this version has it."""
    import resnet_keras

    try:
        return resnet_keras.Predictor
    except AttributeError:
        return None


def inference_function(model: Any, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """The one place an extraction calls the model: batch in, float32 rows out.

    The fastest path available: `resnet_keras.Predictor` where it exists,
    else `optimize_for_inference` (BatchNorm folded, compute in `precision`).
    """
    predictor_class = _predictor_class()
    if predictor_class is not None:
        predictor = predictor_class(model, precision=precision)
        return lambda batch: np.asarray(predictor.predict(batch, batch_size=len(batch)), np.float32)

    from ..tools.inference import optimize_for_inference

    fast = optimize_for_inference(model, precision)
    return lambda batch: np.asarray(fast.predict_on_batch(batch), np.float32)
