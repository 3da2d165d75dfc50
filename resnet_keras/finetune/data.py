"""Labelled images in: a folder of class sub-folders, arrays, or a tf.data.Dataset.

Everything here runs before a model is built or a file is written:

- `list_folder` walks DATA_DIR once with `os.scandir` (no file is opened;
  one `stat` per file), keras' `image_dataset_from_directory` convention:
  one sub-folder per class, class names sorted, image files found by suffix
  at any depth. Empty (0-byte) files are counted skips; files with other
  suffixes are counted as ignored. The walk stops with an error past
  `MAX_FILES` entries, so a runaway folder costs bounded time and memory.
- `from_arrays` / `from_dataset` take pixels held in memory.
- `split` is the deterministic, stratified train/validation split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImageError, InvalidArgumentError
from ..images import IMAGE_SUFFIXES

# Entries (files and folders) a listing reads at most: 10 million names are
# about 1 GB of Python strings, more than any single-machine run trains on.
MAX_FILES = 10_000_000
MIN_CLASSES = 2


@dataclasses.dataclass(frozen=True)
class Examples:
    """Labelled images before decoding: files below `root`, or `pixels` in memory."""

    class_names: tuple[str, ...]
    labels: np.ndarray  # (n,) int32 class indices
    root: Path | None = None
    paths: tuple[str, ...] | None = None  # relative to root, '/'-separated
    pixels: np.ndarray | None = None  # (n, height, width, 3), RGB in [0, 255]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason): left out before training
    ignored: int = 0  # files without an image suffix

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, index: int) -> str:
        """How reports and the split record name example `index`."""
        return self.paths[index] if self.paths is not None else f"#{index}"

    def digest(self) -> str:
        """sha256 of the class names, labels and file names (and sizes): the resume key."""
        digest = hashlib.sha256()
        for name in self.class_names:
            digest.update(name.encode("utf-8") + b"\0")
        digest.update(np.ascontiguousarray(self.labels, np.int32).tobytes())
        if self.paths is not None:
            for path in self.paths:
                digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
        if self.pixels is not None:
            digest.update(np.ascontiguousarray(self.pixels).tobytes())
        return f"sha256:{digest.hexdigest()}"


def _data_error(rule: str, where: Any, remedy: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{rule} Received: data={os.fspath(where)!r}. {remedy}")


def _class_name(entry: os.DirEntry, root: Path) -> str:
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, decoded with surrogateescape
        shown = os.fsencode(entry.name)
        raise _data_error(
            f"Class folder names must be valid UTF-8 (they become the class names the model "
            f"prints); {shown!r} is not.", root, "Rename the folder.") from None
    return entry.name


def _walk(folder: Path, budget: list[int]):
    """(relative path, size) of the files below `folder` with an image suffix; counts the others."""
    stack, ignored, found = [(folder, "")], 0, []
    while stack:
        current, prefix = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                budget[0] -= 1
                if budget[0] < 0:
                    raise InvalidArgumentError(
                        f"DATA_DIR must hold at most {MAX_FILES:,} files and folders. Received: "
                        f"more below {os.fspath(folder)!r}. Split the data, or pass a tf.data.Dataset.")
                if entry.name.startswith("."):
                    continue
                relative = f"{prefix}{entry.name}"
                if entry.is_dir():
                    stack.append((Path(entry.path), relative + "/"))
                elif entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    found.append((relative, entry.stat().st_size))
                else:
                    ignored += 1
    found.sort()
    return found, ignored


def list_folder(root: str | os.PathLike) -> Examples:
    """The images of a folder of class sub-folders, labelled by folder, sorted.

    Raises:
        ImageError: `root` is missing or not a folder.
        InvalidArgumentError: fewer than two class folders, a class without
            images, a class name that is not UTF-8, or too many files.
    """
    root = Path(root)
    if not root.is_dir():
        problem = "not a folder" if root.exists() else "no such folder"
        raise ImageError(f"DATA_DIR must be a folder with one sub-folder of images per class. "
                         f"Received: data={os.fspath(root)!r} ({problem}).")
    budget, classes, ignored = [MAX_FILES], [], 0
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                classes.append(_class_name(entry, root))
            elif not entry.name.startswith("."):
                ignored += 1  # keras ignores files beside the class folders too
    classes.sort()
    if len(classes) < MIN_CLASSES:
        raise _data_error(
            f"DATA_DIR must hold at least {MIN_CLASSES} class sub-folders (one per class, keras' "
            f"image_dataset_from_directory layout); it has {len(classes)}"
            + (f" ({classes[0]!r})." if classes else "."), root,
            "Put the images of each class in a sub-folder named after it.")
    paths, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        found, other = _walk(root / name, budget)
        ignored += other
        usable = [(f"{name}/{path}", size) for path, size in found]
        skipped += [(path, "empty file (0 bytes)") for path, size in usable if size == 0]
        usable = [path for path, size in usable if size > 0]
        if not usable:
            raise _data_error(
                f"Every class folder must hold at least one non-empty image file "
                f"({', '.join(IMAGE_SUFFIXES)}); {name!r} holds "
                f"{f'{len(found)}, all empty (0 bytes)' if found else 'none'}.", root,
                f"Add images to {name!r}, or remove the folder.")
        paths += usable
        labels += [label] * len(usable)
    return Examples(tuple(classes), np.asarray(labels, np.int32), root=root, paths=tuple(paths),
                    skipped=tuple(skipped), ignored=ignored)


def _labels(y: Any, class_names: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise _fail_labels(f"shape {y.shape}")
    if y.dtype.kind in "US":
        names = tuple(sorted(set(y.astype(str).tolist())))
        if class_names is not None and tuple(class_names) != names:
            raise InvalidArgumentError(
                "`class_names` must be the sorted label strings when labels are strings. "
                f"Received: class_names={list(class_names)[:10]!r}, labels {list(names)[:10]!r}")
        return np.searchsorted(np.asarray(names), y.astype(str)).astype(np.int32), names
    if y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise _fail_labels(f"dtype {y.dtype}" + (f", smallest {y.min()}" if y.size else ""))
    count = int(y.max()) + 1 if y.size else 0
    if class_names is None:
        class_names = [str(i) for i in range(count)]
    names = tuple(class_names)
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise InvalidArgumentError(
            f"`class_names` must be distinct, non-empty strings. Received: class_names={list(names)[:10]!r}")
    if count > len(names):
        raise InvalidArgumentError(
            f"Labels must be class indices below len(class_names) = {len(names)}. "
            f"Received: a label {count - 1}")
    return y.astype(np.int32), names


def _fail_labels(what: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        "Labels must be one class index per image (non-negative integers), class-name strings "
        f"or one-hot rows. Received: labels of {what}")


def _pixels(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:  # grey: as RGB, the rule of images.read_pixels
        x = np.repeat(x, 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype.kind not in "uif":
        raise InvalidArgumentError(
            "Images must be an array (n, height, width, 3) of RGB values in [0, 255] (channels "
            f"last). Received: an array of shape {x.shape} and dtype {x.dtype}")
    if x.dtype.kind == "f":
        if x.size and not np.isfinite(x).all():
            raise InvalidArgumentError("Images must be finite RGB values in [0, 255]. Received: NaN or Inf")
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        scaled = 0 < high <= 1.0
        if low < 0 or high > 255 or scaled:
            raise InvalidArgumentError(
                "Images must be RGB values in [0, 255], before any preprocessing (fine_tune applies "
                f"the weights' own). Received: values in [{low:g}, {high:g}]"
                + (", which look scaled to [0, 1] already" if scaled else "") + ". Pass the decoded pixels.")
    return x


def from_arrays(x: Any, y: Any, class_names: Sequence[str] | None) -> Examples:
    """Examples from an image array and labels (indices, strings or one-hot)."""
    pixels = _pixels(x)
    labels, names = _labels(y, class_names)
    if len(labels) != len(pixels):
        raise InvalidArgumentError(
            f"There must be one label per image. Received: {len(pixels)} images, {len(labels)} labels")
    if len(names) < MIN_CLASSES:
        raise InvalidArgumentError(
            f"Fine-tuning needs at least {MIN_CLASSES} classes. Received: {len(names)} class "
            f"({list(names)!r}). Add images of another class.")
    missing = sorted(set(range(len(names))) - set(labels.tolist()))
    if missing:
        raise InvalidArgumentError(
            f"Every class must have at least one image. Received: none of {[names[i] for i in missing][:5]!r}")
    return Examples(names, labels, pixels=pixels)


def from_dataset(dataset: Any, class_names: Sequence[str] | None, max_bytes: int) -> Examples:
    """Examples from a tf.data.Dataset of (image, label), batched or not, read into memory once."""
    images, labels, total = [], [], 0
    for element in dataset.as_numpy_iterator():
        if not isinstance(element, tuple) or len(element) != 2:
            raise InvalidArgumentError(
                "A dataset must yield (image, label) pairs (or batches of them). "
                f"Received: an element of type {type(element).__name__}")
        image, label = element
        batched = np.ndim(image) == 4
        images.append(image if batched else image[None])
        labels.append(label if batched else np.asarray(label)[None])
        total += images[-1].nbytes
        if total > max_bytes:
            raise InvalidArgumentError(
                f"A tf.data.Dataset is read into memory once (for a deterministic split and an "
                f"exact resume); this one holds more than {max_bytes:,} bytes. Received: data="
                "tf.data.Dataset. Pass a folder of class sub-folders instead.")
    if not images:
        raise InvalidArgumentError("The dataset must yield at least one image. Received: an empty dataset")
    shapes = {image.shape[1:] for image in images}
    if len(shapes) > 1:
        raise InvalidArgumentError(
            "The images of a dataset must all have one size. Received: sizes "
            f"{sorted(shapes)[:3]!r}. Resize them in the dataset (e.g. keras.layers.Resizing).")
    return from_arrays(np.concatenate(images), np.concatenate(labels), class_names)


def read(data: Any, class_names: Sequence[str] | None, max_bytes: int) -> Examples:
    """`data` as Examples: a folder path, a tf.data.Dataset, or a pair (images, labels)."""
    if isinstance(data, (str, os.PathLike)):
        if class_names is not None:
            raise InvalidArgumentError(
                "`class_names` comes from the sub-folder names of a folder. Received: "
                f"class_names={list(class_names)[:5]!r} with a folder. Leave it out.")
        return list_folder(data)
    if isinstance(data, tuple) and len(data) == 2:
        return from_arrays(data[0], data[1], class_names)
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator"):
        return from_dataset(data, class_names, max_bytes)
    raise InvalidArgumentError(
        "`data` must be a folder of class sub-folders, a tf.data.Dataset of (image, label), or a "
        f"pair (images, labels) of arrays. Received: data of type {type(data).__name__}")


def split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions: per class, a seeded share `fraction` for validation.

    Every class keeps at least one training image, and a class of two or
    more images gives at least one to validation when `fraction` > 0. The
    result depends only on the labels, `fraction` and `seed`.
    """
    train, validation = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = np.random.default_rng([seed, int(label)]).permutation(members)
        count = 0 if fraction == 0 else min(max(round(len(members) * fraction), 1), len(members) - 1)
        validation.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))
