"""Overlays written to a folder, one per image and class, named so a person finds them.

What `classify --explain OUT_DIR` does, usable with any Keras classifier
(a zoo model, a keras.applications ResNet, a fine-tuned model):
`check_folder` before any model is built, then `OverlayWriter.write` per
batch. Files are `<stem>.top<rank>.<label>.png`, e.g.
`elephant.top1.African_elephant.png`; two images with the same stem get
`<stem>~<position in the list>` instead. Each file appears complete or not
at all; the folder is created with the first one.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidArgumentError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")  # labels like "jack-o'-lantern" or "a/b" in file names


def check_folder(text: str | os.PathLike, *, option: str = "--explain") -> Path:
    """An existing writable folder, or a new one whose parent folder exists."""
    folder = Path(text)
    parent = folder.parent if not folder.exists() else folder
    problem = None
    if folder.exists() and not folder.is_dir():
        problem = "it exists and is not a folder"
    elif not parent.is_dir():
        problem = f"its parent folder {os.fspath(parent)!r} does not exist"
    elif not os.access(parent, os.W_OK | os.X_OK):
        problem = f"{os.fspath(parent)!r} is not writable"
    if problem:
        raise InvalidArgumentError(
            f"{option} must be a folder to write overlays to (existing, or new in an existing "
            f"folder); {problem}. Received: {option}={os.fspath(text)!r}"
        )
    return folder


def stems(paths: Sequence[Path]) -> list[str]:
    """File-name stems, made unique: a repeated stem gets `~<1-based position>`."""
    counts = collections.Counter(Path(p).stem for p in paths)
    return [
        Path(p).stem if counts[Path(p).stem] == 1 else f"{Path(p).stem}~{i}"
        for i, p in enumerate(paths, 1)
    ]


def image_loader(transform, preprocessing: str | None):
    """paths -> (pixels as read, the preprocessed batch): what `classify` feeds its model.

    `transform`: an `images.Transform` (or a (height, width) size), as for `images.load_batch`.
    """
    from ..images import load_batch, preprocess

    def load(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
        pixels = load_batch(paths, transform)
        return pixels, preprocess(pixels.copy(), preprocessing)  # preprocess writes in place

    return load


def file_name(stem: str, rank: int, label: str) -> str:
    return f"{stem}.top{rank}.{_UNSAFE.sub('_', label)}.png"


@dataclasses.dataclass
class OverlayWriter:
    """Grad-CAM overlays of a classifier's top-k classes, written to `folder`.

    Attributes:
        model: The Keras classifier (any model `grad_cam` takes).
        folder: Checked by `check_folder`; created at the first write.
        paths: Every image of the run, in order (their file stems name the overlays).
        top: Classes per image, best first.
        load: paths -> (pixels in [0, 255] as read, the batch the model takes).
        names: Class names in output order (None: `images.class_names`, as `classify` prints them).
        written: Paths written so far.
    """

    model: object
    folder: Path
    paths: Sequence[Path]
    top: int
    load: Callable[[Sequence[Path]], tuple[np.ndarray, np.ndarray]]
    names: Sequence[str] | None = None
    written: list[Path] = dataclasses.field(default_factory=list)
    _done: int = 0  # images of `paths` written so far

    def write(self, batch: Sequence[Path], scores: np.ndarray) -> None:
        """Overlays of the next images of `paths` for the best `top` classes of their `scores`."""
        from .gradcam import grad_cam
        from .overlays import save_overlay
        from ..images import class_names, top_classes

        names = stems(self.paths)[self._done:self._done + len(batch)]
        scores = np.asarray(scores)
        labels = class_names(scores.shape[-1]) if self.names is None else self.names
        best = top_classes(scores, self.top)  # the ranking classify prints
        pixels, x = self.load(batch)
        heatmaps = grad_cam(self.model, x, best)
        self.folder.mkdir(exist_ok=True)
        self._done += len(batch)
        for name, image, classes, maps in zip(names, pixels, best, heatmaps):
            for rank, (index, heatmap) in enumerate(zip(classes, maps), 1):
                label = labels[int(index)]
                self.written.append(save_overlay(self.folder / file_name(name, rank, label), image, heatmap))
