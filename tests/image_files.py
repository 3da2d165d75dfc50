"""Image files as other programs write them, for the tests of the image rule.

Each writer makes a small file at test time: 16-bit PNGs (Pillow writes grey
ones; a 48-bit RGB one is written here chunk by chunk), a DDS texture Pillow
half-recognises, a file that makes a Pillow plugin raise an odd exception, a
sparse multi-GB file, and names that are not valid UTF-8. And
`torchvision_eval`: the pixels torchvision evaluates a file on, computed
here independently of the package.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

ODD_MAGIC = b"ODDTEST!"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png48(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (which Pillow cannot write)."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
                     + _chunk(b"IEND", b""))
    return path


def write_dds_texture(path: Path) -> Path:
    """A DDS header with a pixel format Pillow does not implement (it raises NotImplementedError)."""
    header = (b"DDS " + struct.pack("<7I", 124, 0x1007, 8, 8, 0, 0, 0) + bytes(44)
              + struct.pack("<2I", 32, 4) + b"XYZW" + bytes(20) + struct.pack("<5I", 0x1000, 0, 0, 0, 0))
    path.write_bytes(header + bytes(256))
    return path


def write_sparse(path: Path, size: int) -> Path:
    """`size` bytes of zeros that take no disk space (a sparse file)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def bytes_name(folder: Path, name: bytes) -> Path:
    """`folder / name` for a name given as bytes (which need not be UTF-8)."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


class _OddImageFile(ImageFile.ImageFile):
    """A format whose decoder fails the way no Pillow error class says."""

    format = "ODDTEST"
    format_description = "test plugin that fails to decode"

    def _open(self):
        self._size = (8, 8)
        self._mode = "RGB"

    def load(self):
        raise ZeroDivisionError("the decoder divided by zero")


@contextlib.contextmanager
def odd_plugin():
    """Pillow reads files that start with ODD_MAGIC with `_OddImageFile` (for the block only)."""
    Image.init()  # every plugin registered first, so that restoring drops only ours
    saved_id, saved_open = list(Image.ID), dict(Image.OPEN)
    Image.register_open(_OddImageFile.format, _OddImageFile, lambda prefix: prefix.startswith(ODD_MAGIC))
    try:
        yield
    finally:
        Image.ID[:] = saved_id
        Image.OPEN.clear()
        Image.OPEN.update(saved_open)


def random_rgb(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def torchvision_eval(path, resize: int, crop: int) -> np.ndarray:
    """torchvision's `Resize(resize)` then `CenterCrop(crop)` on a PIL image, written out from
    torchvision 0.2x's functional.py (`_compute_resized_output_size`, `center_crop`)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = resize, int(resize * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.BILINEAR)  # torchvision's default for PIL
        top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
        return np.asarray(image.crop((left, top, left + crop, top + crop)), np.float32)
