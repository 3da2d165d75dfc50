"""The model side of an extraction: what identifies it, how a file becomes
its input, and the one function that calls it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .store import Settings
from ..files import file_sha256
from ..images import preprocess, read_pixels

if TYPE_CHECKING:
    from ..architecture.resolve import Resolved


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
    return f"sha256:{file_sha256(resolved.path)}"


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


def model_input(path: str, size: tuple[int, int], preprocessing: str | None,
                max_bytes: int | None = None) -> tuple[np.ndarray, str]:
    """(pixels ready for the model, "") for a readable file, else (zeros, reason).

    `read_pixels` then `preprocess`: the rules `classify` and `features`
    use, one image at a time (both are per-pixel, so a batch of these is
    exactly what `preprocess(load_batch(...))` gives).
    """
    pixels = read_pixels(path, size, max_bytes=max_bytes)
    if isinstance(pixels, str):
        return np.zeros((*size, 3), np.float32), pixels
    return np.ascontiguousarray(preprocess(pixels, preprocessing), np.float32), ""


def inference_function(model: Any, precision: str, runtime: str = "auto",
                       calibration: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The one place an extraction (and `features`) calls the model: batch in, float32 rows out.

    A `resnet_keras.Predictor`: the fastest runtime installed for `precision`
    unless `runtime` names one; int8 calibrates on `calibration`.
    """
    from ..inference.predictor import Predictor

    predictor = Predictor(model, precision=precision, runtime=runtime, calibration=calibration)
    run = lambda batch: np.asarray(predictor.predict(batch, batch_size=len(batch)), np.float32)  # noqa: E731
    run.predictor = predictor  # what the command line reports
    return run
