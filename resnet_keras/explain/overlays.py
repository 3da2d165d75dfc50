"""A heatmap blended onto its image, and written as PNG or JPEG.

Needs NumPy and Pillow only (both required by the package). "jet" is built
in (matplotlib's table, to the last bit); any other matplotlib colormap
name works where matplotlib is installed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError, did_you_mean
from ..files import atomic_write

# matplotlib's "jet" as (position, value) breakpoints per channel (_cm._jet_data).
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)
_LUT_SIZE = 256  # matplotlib's default table size
# Path suffix -> Pillow format and options.
_JPEG = ("JPEG", {"quality": 92, "subsampling": 0})  # 4:4:4: no colour bleeding at the heat edges
FORMATS = {".png": ("PNG", {}), ".jpg": _JPEG, ".jpeg": _JPEG}


def _jet_table() -> np.ndarray:
    positions = np.linspace(0.0, 1.0, _LUT_SIZE)
    return np.stack(
        [np.interp(positions, *zip(*channel)) for channel in _JET], axis=-1
    ).astype(np.float32)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """RGB colors in [0, 1] of a heatmap in [0, 1], shape (H, W, 3)."""
    if colormap == "jet":
        # matplotlib's lookup: value * N, truncated, 1.0 falls in the last bin
        index = np.clip((heatmap * _LUT_SIZE).astype(np.int64), 0, _LUT_SIZE - 1)
        return _jet_table()[index]
    try:
        import matplotlib
    except ImportError as error:
        raise MissingDependencyError(
            f"colormap {colormap!r} needs matplotlib; 'jet' is built in. Received: "
            f"colormap={colormap!r}. Install it with `pip install matplotlib`, or use colormap='jet'."
        ) from error
    if not isinstance(colormap, str) or colormap not in matplotlib.colormaps:
        suggestion = did_you_mean(colormap, matplotlib.colormaps)
        raise InvalidArgumentError(
            f"`colormap` must be 'jet' or a matplotlib colormap name.{suggestion} "
            f"Received: colormap={colormap!r}"
        )
    return np.asarray(matplotlib.colormaps[colormap](heatmap), dtype=np.float32)[..., :3]


def _rgb(image) -> np.ndarray:
    """(H, W, 3) float32 pixels in [0, 255] from (H, W), (H, W, 1|3) or (1|3, H, W)."""
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[-1] not in (1, 3) and pixels.shape[0] in (1, 3):
        pixels = np.moveaxis(pixels, 0, -1)  # channels_first
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3) or pixels.dtype.kind not in "fiu":
        raise InvalidArgumentError(
            "`image` must be RGB or grey pixels of shape (H, W, 3), (H, W), (H, W, 1) or "
            f"(3, H, W). Received: image of shape {pixels.shape} and dtype {pixels.dtype}"
        )
    pixels = pixels.astype(np.float32)
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise InvalidArgumentError(
            "`image` must hold pixels in [0, 255] (uint8, or floats as keras.utils.load_img "
            f"gives them), not a preprocessed batch. Received: values from {pixels.min():g} to "
            f"{pixels.max():g}. Pass the original pixels (floats in [0, 1]: times 255)."
        )
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _heat(heatmap, size: tuple[int, int]) -> np.ndarray:
    """A 2-D heatmap in [0, 1], resized (bilinear) to `size` = (height, width)."""
    from PIL import Image

    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or not np.isfinite(heat).all() or heat.min() < -1e-6 or heat.max() > 1 + 1e-6:
        low, high = (f"{heat.min():g}", f"{heat.max():g}") if heat.size else ("-", "-")
        raise InvalidArgumentError(
            "`heatmap` must be one 2-D map with values in [0, 1] (as grad_cam returns them). "
            f"Received: heatmap of shape {heat.shape}, values from {low} to {high}"
        )
    if heat.shape != size:
        heat = np.asarray(Image.fromarray(heat).resize(size[::-1], Image.BILINEAR))
    return np.clip(heat, 0.0, 1.0)


def overlay(image, heatmap, *, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """The heatmap in color blended onto the image: (1 - alpha) * image + alpha * color.

    Args:
        image: The pixels the model saw before preprocessing: (H, W, 3) RGB
            (or grey, or channels_first), uint8 or floats in [0, 255].
        heatmap: (h, w) values in [0, 1], e.g. one map of `grad_cam`; resized
            (bilinear) to the image when its size differs.
        alpha: Weight of the colored heatmap, in [0, 1].
        colormap: "jet" (built in), or a matplotlib colormap name.

    Returns:
        uint8 RGB pixels of shape (H, W, 3).

    Example:
        >>> import numpy as np
        >>> from resnet_keras.explain import overlay
        >>> image = np.full((32, 32, 3), 128, np.uint8)
        >>> heat = np.zeros((8, 8)); heat[2, 2] = 1.0
        >>> overlay(image, heat).shape
        (32, 32, 3)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise InvalidArgumentError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    pixels = _rgb(image)
    color = colorize(_heat(heatmap, pixels.shape[:2]), colormap) * 255.0
    blended = (1.0 - alpha) * pixels + alpha * color
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def check_path(path: str | os.PathLike) -> Path:
    """`path` if its suffix is one `save_overlay` writes (.png, .jpg, .jpeg, any case)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InvalidArgumentError(
            f"`path` must end with {', '.join(FORMATS)} (any case). Received: path={os.fspath(path)!r}"
        )
    return path


def encode_overlay(image, heatmap, *, format: str = "png", alpha: float = 0.4,
                   colormap: str = "jet") -> bytes:
    """`overlay(image, heatmap)` as PNG or JPEG bytes, e.g. for a data: URI in an HTML report.

    Args:
        format: "png" or "jpeg" ("jpg"), any case.
    """
    from PIL import Image

    suffix = f".{str(format).lower()}"
    if suffix not in FORMATS:
        raise InvalidArgumentError(f"`format` must be 'png', 'jpg' or 'jpeg'. Received: format={format!r}")
    image_format, options = FORMATS[suffix]
    encoded = io.BytesIO()
    Image.fromarray(overlay(image, heatmap, alpha=alpha, colormap=colormap)).save(
        encoded, format=image_format, **options
    )
    return encoded.getvalue()


def save_overlay(path: str | os.PathLike, image, heatmap, *, alpha: float = 0.4,
                 colormap: str = "jet") -> Path:
    """Write `overlay(image, heatmap)` to `path` as PNG or JPEG (by its suffix).

    The file appears complete or not at all (written beside it, then
    renamed over it); an existing file is replaced.

    Returns:
        The path written.
    """
    path = check_path(path)
    data = encode_overlay(image, heatmap, format=path.suffix[1:], alpha=alpha, colormap=colormap)
    with atomic_write(path) as f:
        f.write(data)
    return path
