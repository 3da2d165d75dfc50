"""Image files in, model-ready batches out: what `classify`, `features` and
`resnet_keras.extraction` share.

One rule each, in one place:

- which files are images (`list_images`: files as given, folders walked
  for image suffixes, sorted); `collect_images` also checks every header
  before any model is built (classify, features to .npz);
- how a file becomes pixels (`read_pixels`: `keras.utils.load_img` with the
  model's input size, as keras resizes, converted to RGB so that grey and
  RGBA files work; `load_batch` for a list that must all be readable);
- how pixels are scaled for a model (`preprocess`: the model's
  `preprocess_input` mode; models without one, the CIFAR nets, get pixels
  / 255 as their examples train them);
- how scores become labels (`top_labels`: ImageNet names for 1000-class
  heads, `class_<index>` otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ._imagenet import NUM_CLASSES, decode_predictions, preprocess_input
from .data_format import current, spatial_dims
from .errors import ImageError, InvalidArgumentError

if TYPE_CHECKING:  # Keras is imported where pixels are read, not to check files
    import keras

# Suffixes picked up when a folder is walked (case-insensitive). A file named
# on the command line is read whatever its suffix.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_NOT_AN_IMAGE = "Not an image Pillow can read"


def _image_error(path: Path, problem: str) -> ImageError:
    return ImageError(
        f"{problem}: {path}. Every IMAGE must be a readable image file (JPEG, PNG, ...) "
        f"or a folder of them. Received: {os.fspath(path)!r}"
    )


def _check_header(path: Path) -> None:
    """Open the file's header with Pillow (cheap: no pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except UnidentifiedImageError as error:
        raise _image_error(path, _NOT_AN_IMAGE) from error
    except Image.DecompressionBombError as error:
        raise _bomb_error(path, error) from error
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for broken headers
        raise _image_error(path, _unreadable(error)) from error


def _bomb_error(path: Path, error: Exception) -> ImageError:
    # A header may declare 30000x30000 pixels in a file of a few hundred bytes.
    return _image_error(path, _bomb_problem(error))


def _unreadable(error: Exception) -> str:
    return f"Unreadable image ({' '.join(str(error).split())})"


def _bomb_problem(error: Exception) -> str:
    return f"Refused: too many pixels to decode safely ({' '.join(str(error).split()[:4])})"


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files that `inputs` name, in a deterministic order.

    Files are taken as given, in the given order; a folder contributes the
    files below it (recursively) whose suffix is in `IMAGE_SUFFIXES`, sorted
    by path. No file is opened: `collect_images` checks headers too.

    Raises:
        ImageError: a path is missing or is neither a file nor a folder.
        InvalidArgumentError: no image at all (empty folders).
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(
                sorted(
                    p for p in path.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                )
            )
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise _image_error(path, "Not a file or folder")
        else:
            raise _image_error(path, "No such file")
    if not paths:
        raise InvalidArgumentError(
            "The inputs must name at least one image file (folders are searched for "
            f"{', '.join(IMAGE_SUFFIXES)}). Received: {[os.fspath(p) for p in inputs]}"
        )
    return paths


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """`list_images(inputs)`, every file's header checked.

    Raises:
        ImageError: a path is missing, or a file is not a readable image.
        InvalidArgumentError: no image at all (empty folders).
    """
    paths = list_images(inputs)
    for path in paths:
        _check_header(path)
    return paths


def spatial_size(model: keras.Model) -> tuple[int, int]:
    """(height, width) of the model's input."""
    shape = model.input_shape
    size = spatial_dims(shape, current())
    if None in size:
        raise InvalidArgumentError(
            f"The model needs a fixed input size to read images. Received: input_shape={shape}"
        )
    return tuple(size)


def read_pixels(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray | str:
    """One image decoded, converted to RGB and resized as keras does (float32
    pixels in [0, 255], height x width x 3), or what is wrong with the file.

    The one decoding rule: `load_batch` raises on a problem, the streaming
    extraction lists it in its errors file and goes on.
    """
    import keras
    from PIL import Image, UnidentifiedImageError

    try:
        image = keras.utils.load_img(path, color_mode="rgb", target_size=tuple(size))
    except Image.DecompressionBombError as error:
        return _bomb_problem(error)
    except FileNotFoundError:
        return "No such file"
    except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
        return _NOT_AN_IMAGE
    except (OSError, SyntaxError, ValueError) as error:  # truncated, corrupt or not an image
        return _unreadable(error)
    return keras.utils.img_to_array(image, dtype="float32")


def load_batch(paths: Iterable[Path], size: tuple[int, int]) -> np.ndarray:
    """Decode, convert to RGB and resize images as keras does; float32 pixels in [0, 255]."""
    arrays = []
    for path in paths:
        pixels = read_pixels(path, size)
        if isinstance(pixels, str):
            raise _image_error(Path(path), pixels)
        arrays.append(pixels)
    return np.stack(arrays)


def preprocess(batch: np.ndarray, mode: str | None) -> np.ndarray:
    """Scale a batch of RGB pixels for a model whose preprocessing is `mode`."""
    if mode is None:
        return batch / 255.0
    return preprocess_input(batch, mode=mode)


def top_labels(scores: np.ndarray, top: int) -> list[list[tuple[str, float]]]:
    """Best `top` (label, score) per row: ImageNet names for 1000 classes, else class_<i>."""
    if scores.shape[-1] == NUM_CLASSES:
        return [[(label, float(score)) for _, label, score in row]
                for row in decode_predictions(scores, top=top)]
    best = np.argsort(-scores, axis=-1, kind="stable")[:, :top]
    return [[(f"class_{i}", float(row[i])) for i in order] for row, order in zip(scores, best)]


def format_top(path: str | os.PathLike, labels: Sequence[tuple[str, float]]) -> str:
    """The path on one line, then `  1. label   0.1234` per label."""
    lines = [os.fspath(path)]
    lines += [f"  {rank}. {label:<24} {score:.4f}" for rank, (label, score) in enumerate(labels, 1)]
    return "\n".join(lines)
