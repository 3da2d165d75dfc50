"""`FineTuned`, what `fine_tune` returns, and `load_run`, which reads one back from RUN_DIR."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import rundir
from .settings import Settings, check_preprocessing
from ..errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class FineTuned:
    """A trained classifier and everything needed to use and judge it.

    Attributes:
        model: The Keras model: the zoo architecture with a `len(class_names)`
            -way softmax head (`predictions`), weights of the kept epoch,
            float32 and uncompiled whatever precision trained it.
        class_names: Class names in output order.
        input_size: Height and width of the model's input.
        preprocessing: The `preprocess_input` mode its inputs get (None:
            pixels / 255), from the weights' record.
        settings: Every setting of the run.
        history: One dict per epoch (phase, loss, accuracy, validation
            top-1/top-5/loss, seconds, images/s).
        metrics: Validation metrics of the kept epoch (top1, top5, loss,
            per_class precision/recall, confusion), empty without validation.
        best_epoch: The epoch (0-based) whose weights the model holds.
        run_dir: The RUN_DIR, or None when `fine_tune` ran without `out=`.
        skipped: (path, reason) of every image left out before training
            (empty or unreadable files).
    """

    model: Any
    class_names: tuple[str, ...]
    input_size: int
    preprocessing: str | None
    settings: Settings
    history: tuple[dict, ...] = ()
    metrics: dict = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None
    run_dir: Path | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def transform(self):
        """How image files are read for this model: the eval transform it was validated with."""
        from ..images import eval_transform

        return eval_transform(self.input_size, resize_size=self.settings.resize_size,
                              input_size=self.settings.input_size)

    def predict(self, images: Sequence[str | os.PathLike] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (n, classes) of image files (read as `classify` reads them), or of
        RGB pixels (n, height, width, 3) in [0, 255] (resized bilinearly to the input size)."""
        from ..images import load_batch, preprocess
        from .source import resize_pixels

        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if isinstance(images, np.ndarray):  # as fine_tune resized arrays for training
                pixels = resize_pixels(batch, self.input_size).astype(np.float32)
            else:
                pixels = load_batch(batch, self.transform)
            chunks.append(np.asarray(self.model.predict_on_batch(preprocess(pixels, self.preprocessing))))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.class_names)), np.float32)

    def top_labels(self, probs: np.ndarray, top: int = 5) -> list[list[tuple[str, float]]]:
        """Best `top` (class name, probability) per row of `probs` (the ranking `classify` prints)."""
        from ..images import top_labels

        return top_labels(probs, top, self.class_names)


def _run_error(folder: Path, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"A fine-tuned model must be a complete RUN_DIR of `resnet-keras finetune` (with {rundir.RUN}); "
        f"{problem}. Received: {os.fspath(folder)!r}. Finish the run (rerun the same command) or "
        "name another folder.")


def read_run(folder: str | os.PathLike) -> dict:
    """run.json of a complete run, every field checked (nothing in it is ever executed)."""
    from ..architecture.specs import model_key

    folder = Path(folder)
    if not (folder / rundir.RUN).is_file():
        raise _run_error(folder, f"there is no {rundir.RUN}" + ("" if folder.is_dir() else " (not a folder)"))
    try:
        run = rundir.read_json(folder / rundir.RUN, limit=16 << 20)
        if run.get("format") != rundir.FORMAT:
            raise ValueError(f"format {run.get('format')!r}")
        names, size = run["class_names"], run["input_size"]
        if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
            raise ValueError("class_names is not a list of at least 2 names")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 16384:
            raise ValueError(f"input_size {size!r}")
        check_preprocessing(run["preprocessing"])
        run["model"] = model_key(run["model"])
        if not isinstance(run["weights_sha256"], str) or len(run["weights_sha256"]) != 64:
            raise ValueError("weights_sha256 is not a sha256")
        Settings.from_json(run["settings"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise _run_error(folder, f"its {rundir.RUN} is not readable ({error})") from error
    return run


def load_run(run_dir: str | os.PathLike, *, precision: str = "float32", input_size: int | None = None) -> FineTuned:
    """The FineTuned of a complete RUN_DIR, rebuilt from the registry and its weights file.

    The architecture comes from the registry and run.json; the weights from
    RUN_DIR/weights.h5 through the package's HDF5 reader, after its SHA-256
    matches run.json. No Keras `load_model`, no config deserialization, no
    pickle: nothing in RUN_DIR can run code.

    Args:
        run_dir: A folder that `fine_tune(out=...)` or `resnet-keras finetune` completed.
        precision: "float32" (default) or "bfloat16"/"float16" compute (a float32 head).
        input_size: Build the model for this input size instead of the run's
            (convolutions and the pooled head take any size).
    """
    from .model import classifier, load_weights
    from ..architecture.specs import SPECS

    folder = Path(run_dir)
    run = read_run(folder)
    model = classifier(SPECS[run["model"]], classes=len(run["class_names"]),
                       input_size=input_size or run["input_size"], precision=precision)
    load_weights(model, folder / rundir.WEIGHTS, run["weights_sha256"])
    metrics = rundir.read_json(folder / rundir.METRICS) if (folder / rundir.METRICS).is_file() else {}
    return FineTuned(
        model=model, class_names=tuple(run["class_names"]), input_size=input_size or run["input_size"],
        preprocessing=run["preprocessing"], settings=Settings.from_json(run["settings"]),
        history=tuple(metrics.get("history", ())), metrics=metrics.get("validation", {}),
        best_epoch=metrics.get("best_epoch"), run_dir=folder, skipped=_skipped(folder / rundir.SKIPPED),
    )


def _skipped(path: Path) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        return ()
    with open(path, encoding="utf-8", newline="") as f:
        return tuple((row[0], row[1]) for row in list(csv.reader(f))[1:] if len(row) == 2)
