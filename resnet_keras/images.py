"""Image files in, model-ready batches out: what `classify`, `features` and
`resnet_keras.extraction` share.

One rule each, in one place:

- which files are images (`list_images`: files as given, folders walked
  for image suffixes, sorted); `collect_images` also checks every header
  before any model is built (classify, features to .npz);
- how a file becomes pixels (`read_pixels`; `load_batch` for a list that
  must all be readable): the picture a person sees, as 8-bit RGB, brought
  to the model's size by the weights' eval `Transform` (see "Opening a
  file" and "The eval transform" below);
- how pixels are scaled for a model (`preprocess`: the model's
  `preprocess_input` mode; models without one, the CIFAR nets, get pixels
  / 255 as their examples train them);
- how scores become labels (`top_labels`, `top_classes`, `class_names`:
  a fine-tuned model's own names, else ImageNet's for 1000-class heads,
  else `class_<index>`; ranked best first, ties in class order).

Opening a file (the same for every command and the library):

- Its size is checked first: a file over `MAX_IMAGE_BYTES` (256 MiB;
  `RESNET_KERAS_MAX_IMAGE_BYTES` overrides it) is refused unread, and so
  is anything that is not a regular file. Pillow then decodes from the
  path, reading only what it decodes, within its pixel limit.
- Whatever Pillow raises on a file (a DDS texture named .jpg raises
  NotImplementedError) is that file's problem: `read_pixels` returns it as
  one line, `load_batch` raises `ImageError`; nothing raw escapes.
- 8-bit RGB files give exactly `keras.utils.load_img(path,
  target_size=...)`: no conversion, nearest-neighbour resizing.
- Everything else becomes what a viewer shows: the EXIF orientation is
  applied (keras ignores it); 16-bit and other integer grey (PNG, TIFF)
  is scaled from 0..65535 to 0..255 (keras reads it nearly white); float
  pixels (TIFF mode F) are taken as 0..1; transparent pixels (RGBA, LA,
  palette or grey with a transparent colour) are laid over white; CMYK,
  palette, grey and 1-bit files are converted by Pillow.

The eval transform (`Transform`, from the weights' record: `eval_transform`):

- Without a `resize_size` in the record (keras' weights, random weights):
  the picture is resized to the model's size as keras resizes
  (nearest neighbour, aspect not kept).
- With one (torchvision's weights: 256 or 232 for a 224 input), as
  torchvision evaluates: the shorter side resized to `resize_size`
  (bilinear, aspect kept, the longer side truncated), then the center crop
  of the model's size. At another input size the resize scales with it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ._imagenet import NUM_CLASSES, class_index, preprocess_input
from .errors import ImageError, InvalidArgumentError

if TYPE_CHECKING:  # Pillow is imported where pixels are read, not to list files
    from PIL import Image

# os.fsdecode turns each byte of a name that is not valid UTF-8 into one of
# these lone surrogates ("surrogateescape"): b"\xff" -> "\udcff".
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def printable(text: str | bytes | os.PathLike) -> str:
    """`text` as printable UTF-8: invisible characters and undecodable bytes escaped.

    A file name can hold a newline (which would forge an output line), a
    right-to-left override, or bytes that are not UTF-8 (which no UTF-8
    terminal, CSV or Parquet string can hold). Control and other invisible
    characters are shown as Python escapes (`\\n`, `\\u202e`), undecodable
    bytes as `\\xff`; everything else, backslashes included, as it is. The
    result is printable, so escaping it again changes nothing.

    >>> printable(b"bad\\xff.jpg"), printable("two\\nlines.jpg"), printable("Ünï 写真.jpg")
    ('bad\\\\xff.jpg', 'two\\\\nlines.jpg', 'Ünï 写真.jpg')
    """
    text = os.fsdecode(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    if ord(char) in _ESCAPED_BYTES:
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]


# Suffixes picked up when a folder is walked (case-insensitive). A file named
# on the command line is read whatever its suffix.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# The largest image file read. A JPEG photo is a few MB; an uncompressed
# 8-bit RGB TIFF of 89 megapixels (where Pillow starts to warn) is 268 MB. The
# limit refuses a multi-GB file named .jpg before any of it is read.
MAX_IMAGE_BYTES = 256 * 2**20
MAX_IMAGE_BYTES_VARIABLE = "RESNET_KERAS_MAX_IMAGE_BYTES"
_NOT_AN_IMAGE = "Not an image Pillow can read"
_WHITE = (255, 255, 255, 255)


def max_image_bytes() -> int:
    """`MAX_IMAGE_BYTES`, or RESNET_KERAS_MAX_IMAGE_BYTES where it is set."""
    text = os.environ.get(MAX_IMAGE_BYTES_VARIABLE, "").strip()
    if not text:
        return MAX_IMAGE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidArgumentError(
            f"{MAX_IMAGE_BYTES_VARIABLE} must be a positive number of bytes. "
            f"Received: {MAX_IMAGE_BYTES_VARIABLE}={text!r}. Unset it for the default "
            f"({MAX_IMAGE_BYTES:,})."
        )
    return value


@dataclasses.dataclass(frozen=True)
class Transform:
    """How a picture becomes the model's pixels (see "The eval transform" above).

    Attributes:
        size: The model's input (height, width).
        resize: The shorter side before the center crop of `size`; None:
            keras' plain resize to `size`.
    """

    size: tuple[int, int]
    resize: int | None = None

    def apply(self, picture: Image.Image) -> Image.Image:
        from PIL import Image

        height, width = self.size
        if self.resize is None:
            if picture.size != (width, height):  # as keras.utils.load_img resizes
                picture = picture.resize((width, height), Image.Resampling.NEAREST)
            return picture
        w, h = picture.size  # torchvision's Resize(int): the shorter side to `resize`
        new = (self.resize, int(self.resize * h / w)) if w <= h else (int(self.resize * w / h), self.resize)
        if new != picture.size:
            picture = picture.resize(new, Image.Resampling.BILINEAR)
        top, left = int(round((new[1] - height) / 2.0)), int(round((new[0] - width) / 2.0))  # CenterCrop
        return picture.crop((left, top, left + width, top + height))


def eval_transform(size: int, *, resize_size: int | None, input_size: int) -> Transform:
    """The eval transform of weights trained at `input_size` (their record's `resize_size`), at `size`."""
    resize = None if resize_size is None else resize_size * size // input_size  # scales with the size
    return Transform((size, size), resize)


def _transform(size: tuple[int, int] | Transform) -> Transform:
    return size if isinstance(size, Transform) else Transform(tuple(size))


def image_error(path: str | os.PathLike, problem: str) -> ImageError:
    """The one-line error of an image file that cannot be used (`problem`: what `read_pixels` said)."""
    name = printable(path)
    return ImageError(
        f"{problem}: {name}. Every IMAGE must be a readable image file (JPEG, PNG, ...) "
        f"or a folder of them. Received: '{name}'"
    )


def _file_problem(path: str | os.PathLike, max_bytes: int) -> str | None:
    """What rules a file out before Pillow opens it: missing, not a file, too large."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "No such file"
    except OSError as error:
        return _unreadable(error)
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        return "Not a regular file"
    if info.st_size > max_bytes:
        return (
            f"Refused: {info.st_size:,} bytes, over the size limit for an image file "
            f"({max_bytes:,} bytes; {MAX_IMAGE_BYTES_VARIABLE} raises it)"
        )
    return None


def _problem(error: Exception) -> str:
    """What is wrong with a file, from whatever Pillow raised on it."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(error, Image.DecompressionBombError):
        # A header may declare 30000x30000 pixels in a file of a few hundred bytes.
        return f"Refused: too many pixels to decode safely ({' '.join(str(error).split()[:4])})"
    if isinstance(error, UnidentifiedImageError):  # the same words for every such file
        return _NOT_AN_IMAGE
    if isinstance(error, FileNotFoundError):  # removed after the size check
        return "No such file"
    return _unreadable(error)


def _unreadable(error: Exception) -> str:
    detail = " ".join(str(error).split())
    if not isinstance(error, (OSError, SyntaxError, ValueError)):  # not one of Pillow's usual kinds
        detail = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return printable(f"Unreadable image ({detail})")


def _check_header(path: Path, max_bytes: int) -> None:
    """Size, then the header with Pillow (cheap: no pixels are decoded)."""
    from PIL import Image

    problem = _file_problem(path, max_bytes)
    if problem is None:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as error:  # any exception of a parser on a file: see read_pixels
            problem = _problem(error)
    if problem is not None:
        raise image_error(path, problem)


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
            raise image_error(path, "Not a file or folder")
        else:
            raise image_error(path, "No such file")
    if not paths:
        raise InvalidArgumentError(
            "The inputs must name at least one image file (folders are searched for "
            f"{', '.join(IMAGE_SUFFIXES)}). Received: {[os.fspath(p) for p in inputs]}"
        )
    return paths


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """`list_images(inputs)`, every file's size and header checked.

    Raises:
        ImageError: a path is missing, or a file is not a readable image.
        InvalidArgumentError: no image at all (empty folders).
    """
    paths = list_images(inputs)
    max_bytes = max_image_bytes()
    for path in paths:
        _check_header(path, max_bytes)
    return paths


def read_pixels(path: str | os.PathLike, size: tuple[int, int] | Transform, *,
                max_bytes: int | None = None) -> np.ndarray | str:
    """One image as the model sees it (float32 pixels in [0, 255], height x
    width x 3, see "Opening a file" above), or what is wrong with the file.

    `size` is a `Transform`, or (height, width) for keras' plain resize.

    The one decoding rule: `load_batch` raises on a problem, the streaming
    extraction lists it in its errors file and goes on. `max_bytes` is
    `max_image_bytes()` unless given.
    """
    import keras
    from PIL import Image

    problem = _file_problem(path, max_image_bytes() if max_bytes is None else max_bytes)
    if problem is not None:
        return problem
    transform = _transform(size)
    try:
        with Image.open(path) as image:  # from the path: Pillow reads what it decodes, no more
            picture = transform.apply(_as_seen(image))
            picture.load()  # decoded while the file is open
    except Exception as error:  # noqa: BLE001
        # Pillow's parsers raise what they like on hostile bytes
        # (NotImplementedError, struct.error, IndexError, ...); each is this
        # file's problem, reported with its type, so one file never ends a run.
        return _problem(error)
    return keras.utils.img_to_array(picture, dtype="float32")


def _as_seen(image: Image.Image) -> Image.Image:
    """The picture a viewer shows, as 8-bit RGB (8-bit RGB files unchanged, as keras reads them)."""
    from PIL import ExifTags, Image, ImageOps

    # Pillow reads a damaged EXIF block as empty (with a warning): such a photo is shown as stored.
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I"):  # 16-bit grey (I;16, I;16B) or 32-bit integer: 0..65535
        levels = np.clip(np.asarray(image, np.float64), 0, 65535) / 257
    elif mode == "F":  # float pixels: 0..1, as image editors read them
        levels = np.clip(np.nan_to_num(np.asarray(image, np.float64)), 0, 1) * 255
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    else:  # grey, palette, 1-bit, CMYK, YCbCr: Pillow's conversion
        return image.convert("RGB")
    return Image.fromarray(np.round(levels).astype(np.uint8)).convert("RGB")


def load_batch(paths: Iterable[str | os.PathLike], size: tuple[int, int] | Transform) -> np.ndarray:
    """`read_pixels` of every path, stacked; the first unreadable file raises `ImageError`."""
    arrays = []
    max_bytes = max_image_bytes()
    for path in paths:
        pixels = read_pixels(path, size, max_bytes=max_bytes)
        if isinstance(pixels, str):
            raise image_error(path, pixels)
        arrays.append(pixels)
    return np.stack(arrays)


def preprocess(batch: np.ndarray, mode: str | None) -> np.ndarray:
    """Scale a batch of RGB pixels for a model whose preprocessing is `mode`."""
    if mode is None:
        return batch / 255.0
    return preprocess_input(batch, mode=mode)


def class_names(classes: int) -> list[str]:
    """The names `classify` prints for a head without names of its own: ImageNet's for 1000 classes."""
    if classes == NUM_CLASSES:
        index = class_index()
        return [index[str(i)][1] for i in range(classes)]
    return [f"class_{i}" for i in range(classes)]


def top_classes(scores: np.ndarray, top: int) -> np.ndarray:
    """Indices of the best `top` classes per row, best first (ties: the lower index first)."""
    return np.argsort(-np.asarray(scores), axis=-1, kind="stable")[:, :top]


def top_labels(scores: np.ndarray, top: int, names: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Best `top` (label, score) per row; `names` (a fine-tuned model's) or `class_names`."""
    scores = np.asarray(scores)
    names = class_names(scores.shape[-1]) if names is None else names
    return [[(names[i], float(row[i])) for i in order] for row, order in zip(scores, top_classes(scores, top))]


def format_top(path: str | os.PathLike, labels: Sequence[tuple[str, float]]) -> str:
    """The path on one line, then `  1. label   0.1234` per label."""
    lines = [os.fspath(path)]
    lines += [f"  {rank}. {label:<24} {score:.4f}" for rank, (label, score) in enumerate(labels, 1)]
    return "\n".join(lines)
