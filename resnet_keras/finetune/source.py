"""Pixels for training: every image decoded once before training starts.

`decode` reads each image of a split with the rule `classify` uses
(`images.read_pixels`: RGB, brought to the size by the weights' eval
transform, or resized as keras resizes), so an unreadable,
truncated, grey, CMYK or 16-bit file is either converted or a counted skip
before the first step. What it decoded stays in memory as uint8 when it
fits `budget` bytes; otherwise only the file list is kept and each epoch
decodes again (the same pixels, so the numbers do not change).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys

import numpy as np

from .data import Examples

# Decoding threads: Pillow releases the GIL while it decodes and resizes.
DECODE_THREADS = 4
# The share of physical memory the decoded images may take by default.
MEMORY_SHARE = 0.25


def memory_budget() -> int:
    """Bytes the decoded training and validation images may take in memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 16 << 30
    return int(physical * MEMORY_SHARE)


@dataclasses.dataclass(frozen=True)
class Pixels:
    """Images of one split at one size: in memory (`cache`) or read from `files` on demand.

    `positions` are the examples' indices (into `Examples`), `labels` theirs;
    files are read with the eval transform's `resize` (None: a plain resize).
    """

    size: int
    positions: np.ndarray
    labels: np.ndarray
    cache: np.ndarray | None = None
    files: tuple[str, ...] | None = None
    resize: int | None = None

    @property
    def transform(self):
        from ..images import Transform

        return Transform((self.size, self.size), self.resize)

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), size, size, 3) RGB pixels of the given rows."""
        if self.cache is not None:
            return self.cache[rows]
        from ..images import load_batch

        return load_batch([self.files[row] for row in rows], self.transform).astype(np.uint8)

    def part(self, rows: slice) -> Pixels:
        """The images of `rows` (a worker's block), or these very Pixels when that is all of them."""
        if rows.indices(len(self))[:2] == (0, len(self)):
            return self
        return Pixels(self.size, self.positions[rows], self.labels[rows],
                      cache=None if self.cache is None else self.cache[rows],
                      files=None if self.files is None else self.files[rows], resize=self.resize)


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """In-memory images at `size` x `size` (bilinear), in their own dtype."""
    if pixels.shape[1:3] == (size, size):
        return pixels
    import keras

    chunks = []
    for start in range(0, len(pixels), 256):
        chunk = keras.ops.image.resize(pixels[start:start + 256].astype(np.float32), (size, size),
                                       interpolation="bilinear", data_format="channels_last")
        chunks.append(keras.ops.convert_to_numpy(chunk))
    out = np.concatenate(chunks)
    return np.clip(np.round(out), 0, 255).astype(pixels.dtype) if pixels.dtype.kind in "ui" else out


def _progress(total: int, what: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=what, disable=not enabled, file=sys.stderr, leave=False)


def decode(examples: Examples, positions: np.ndarray, size: int, *, resize: int | None = None, budget: int,
           progress: bool, what: str = "decoding") -> tuple[Pixels, list[tuple[str, str]]]:
    """(Pixels, skipped (path, reason)) of `positions` at `size`; `budget` bytes of memory at most.

    Files are read with the eval transform of `resize` (see `Pixels`); arrays are resized bilinearly.
    """
    positions = np.asarray(positions, np.int64)
    if examples.pixels is not None:
        pixels = resize_pixels(examples.pixels[positions], size)
        return Pixels(size, positions, examples.labels[positions], cache=pixels), []
    from ..images import Transform, read_pixels

    transform = Transform((size, size), resize)
    files = [os.fspath(examples.root / examples.paths[p]) for p in positions]
    keep_in_memory = len(files) * size * size * 3 <= budget
    cache = np.empty((len(files), size, size, 3), np.uint8) if keep_in_memory else None
    ok = np.zeros(len(files), bool)
    skipped = []
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool, \
            _progress(len(files), what, progress) as bar:
        read = lambda path: read_pixels(path, transform)  # noqa: E731
        for row, result in enumerate(pool.map(read, files)):
            bar.update()
            if isinstance(result, str):
                skipped.append((examples.paths[positions[row]], result))
                continue
            ok[row] = True
            if cache is not None:
                cache[row] = result  # whole numbers in [0, 255]: exact as uint8
    kept = positions[ok]
    return Pixels(
        size, kept, examples.labels[kept],
        cache=None if cache is None else cache if ok.all() else cache[ok],
        files=None if cache is not None else tuple(f for f, good in zip(files, ok) if good), resize=resize,
    ), skipped
