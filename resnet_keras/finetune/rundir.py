"""RUN_DIR: what a fine-tuning run writes, and how a killed run resumes.

    settings.json     the run's settings and data digest: a rerun must match to resume
    class_names.json  the class names, in label order
    split.json        the training and validation images (paths, or array indices)
    skipped.csv       images left out before training, and why
    checkpoint.json   the last finished epoch: history, best epoch, checkpoint file
    checkpoint-NNNN.npz   model, optimizer and best-epoch weights after epoch NNNN
    weights.h5        the final weights (Keras 2 HDF5 layout, read by the package's safe reader)
    metrics.json      history, validation metrics, timings
    report.html       one self-contained page for a person
    run.json          written last: what `load_run` needs; its presence means "complete"

Every file appears complete or not at all (`files.replaced`: temp file,
fsync, rename). A run
killed at any moment leaves the last checkpoint whose checkpoint.json rename
happened; the rerun removes temp files and newer orphans and continues.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..files import replaced

FORMAT = "resnet-keras finetune/1"
SETTINGS, CLASSES, SPLIT, SKIPPED = "settings.json", "class_names.json", "split.json", "skipped.csv"
STATE, WEIGHTS, METRICS, REPORT, RUN = "checkpoint.json", "weights.h5", "metrics.json", "report.html", "run.json"
LOCK = ".lock"
_CHECKPOINT = re.compile(r"checkpoint-\d{4,}\.npz$")
OWN_FILES = (SETTINGS, CLASSES, SPLIT, SKIPPED, STATE, WEIGHTS, METRICS, REPORT, RUN)


def write_text(path: Path, text: str) -> None:
    """`text` at `path`, complete or not at all (`files.replaced`)."""
    with replaced(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, ensure_ascii=True) + "\n")


def read_json(path: Path, limit: int = 64 << 20) -> Any:
    """A JSON file of the run, bounded in size; ValueError if it is not JSON."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit:,} bytes")
    return json.loads(data.decode("utf-8"))


def _where(folder: Path) -> str:
    return f"Received: --out={os.fspath(folder)!r}."


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} {a!r} there, {b!r} now")
    return found


def refusal(folder: Path, key: dict, *, overwrite: bool) -> str | None:
    """Why this run must not write into `folder` (None: it may). Reads, never writes."""
    if folder.exists() and not folder.is_dir():
        return f"--out must be a folder (RUN_DIR). {_where(folder)} Choose a folder path."
    if not folder.parent.is_dir():
        return f"--out must be in an existing folder. {_where(folder)} Create {folder.parent} first."
    if not folder.exists() or overwrite:
        return None
    remedy = "Write to a new folder, or pass --overwrite to start the run again."
    if not (folder / SETTINGS).exists():
        if any(not p.name.startswith(".") for p in folder.iterdir()):
            return (f"--out must be a new or empty folder, or a RUN_DIR of `resnet-keras finetune` "
                    f"(it has {SETTINGS}). {_where(folder)} Choose another folder.")
        return None
    try:
        old = read_json(folder / SETTINGS)
        if old.get("format") != FORMAT:
            raise ValueError(f"format {old.get('format')!r}")
    except (OSError, ValueError) as error:
        return f"--out holds an unreadable {SETTINGS} ({error}). {_where(folder)} {remedy}"
    differences = _differences(old, key)
    if differences:
        return (f"--out holds a run with other settings or data, which must not be mixed: "
                f"{'; '.join(differences[:6])}. {_where(folder)} {remedy}")
    return None


class RunDir:
    """A RUN_DIR opened for one run: locked, checked, with its checkpoint."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = None

    @classmethod
    def open(cls, folder: Path, key: dict, *, overwrite: bool) -> RunDir:
        from filelock import FileLock, Timeout

        folder.mkdir(exist_ok=True)
        run = cls(folder)
        lock = FileLock(str(folder / LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout as error:
            raise InvalidArgumentError(
                f"--out must not be in use by another run: {folder} is locked. {_where(folder)} "
                "Wait for that run, or write elsewhere.") from error
        run._lock = lock
        try:
            message = refusal(folder, key, overwrite=overwrite)  # again, under the lock
            if message:
                raise InvalidArgumentError(message)
            for path in folder.iterdir():
                if _is_temp(path) or (overwrite and (
                        path.name in OWN_FILES or _CHECKPOINT.match(path.name))):
                    path.unlink()
            if not (folder / SETTINGS).exists():
                write_json(folder / SETTINGS, key)
        except BaseException:
            run.close()
            raise
        return run

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def complete(self) -> bool:
        return (self.folder / RUN).exists()

    def save_checkpoint(self, epoch: int, arrays: dict[str, np.ndarray], state: dict) -> None:
        """The state after `epoch` (0-based): arrays first, then checkpoint.json names them."""
        name = f"checkpoint-{epoch:04d}.npz"
        with replaced(self.path(name)) as temp:
            _savez(temp, arrays)
        write_json(self.path(STATE), {**state, "epoch": epoch, "file": name})
        for path in self.folder.iterdir():
            if _CHECKPOINT.match(path.name) and path.name != name:
                path.unlink()

    def load_checkpoint(self) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(state, arrays) of the last finished epoch, or None before the first."""
        if not self.path(STATE).exists():
            return None
        try:
            state = read_json(self.path(STATE))
            name = state.get("file", "")
            if not isinstance(name, str) or not _CHECKPOINT.match(name):
                raise ValueError(f"{STATE} names no checkpoint file")
            with np.load(self.path(name), allow_pickle=False) as archive:  # plain arrays, never pickles
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, AttributeError, zipfile.BadZipFile) as error:
            raise InvalidArgumentError(
                f"--out holds a checkpoint that cannot be read ({error}). {_where(self.folder)} "
                "Pass --overwrite to start the run again.") from error
        return state, arrays

    def remove_checkpoints(self) -> None:
        for path in self.folder.iterdir():
            if _CHECKPOINT.match(path.name) or path.name == STATE:
                path.unlink()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _is_temp(path: Path) -> bool:
    """A temp file of `files.replaced` that a killed run left."""
    return path.name.startswith(".") and path.name.endswith(".part")


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
