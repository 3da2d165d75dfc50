"""Where embeddings go: the Parquet folder (shards and their index), the .npz file, and the table of what each takes.

The Parquet folder first; then the records of a run it keeps in its index;
then the sinks (`SINKS`: the capability table, `sink_for`, `NpzFile`).

Layout (every engine writes the same):

    OUT/part-00000.parquet ...  one shard per `shard_size` positions of the
                                image list, rows in list order
    OUT/_index.json             what was run (settings, arguments, image
                                count and digest) and the finished shards
    OUT/_errors.csv             path,reason of every unreadable image
    OUT/_lock                   held while a run writes (a second run stops)

Paths (the `path` column, `_errors.csv`) are the names as given, written by
the one rule of printed names (`resnet_keras.images.printable`): invisible
characters and bytes that are not UTF-8 escaped (`bad\\xff.jpg`).

Names starting with `_` or `.` are skipped by pyarrow.dataset, pandas and
Ray when they read the folder, so `pandas.read_parquet(OUT)` sees shards only.

Crash safety: a shard is written to a hidden temp file and renamed into
place, then the index (also temp + rename) records it; the index is the
truth. A run killed at any moment leaves finished shards, perhaps one
renamed shard not yet in the index, and temp files; the next run removes
the temp files and writes every shard the index does not list, so each
position of the list lands in exactly one row (or one error) once.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError
from ..files import replaced
from ..images import printable


FORMAT = "resnet-keras features/1"
INDEX_NAME = "_index.json"
ERRORS_NAME = "_errors.csv"
LOCK_NAME = "_lock"
_SHARD = re.compile(r"part-(\d{5,})\.parquet$")
# Rows per Parquet row group: bounds the memory a shard needs while it is
# written (1024 x 2048 float32 = 8 MB), whatever the shard size.
ROW_GROUP_ROWS = 1024


def require_pyarrow():
    """pyarrow, or a typed error that names the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            "Writing features as Parquet needs pyarrow, which is not installed. "
            f"Received: {error}. Install it with `pip install \"resnet-keras[features]\"`, "
            "or write a small run to an .npz file instead."
        ) from error
    return pyarrow


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def schema(dim: int):
    """The columns of every shard: one row per readable image."""
    pa = require_pyarrow()
    return pa.schema([
        ("path", pa.string()),
        ("embedding", pa.list_(pa.float32(), dim)),
        ("model", pa.string()),
        ("weights", pa.string()),
        ("pooling", pa.string()),
        ("image_size", pa.list_(pa.int32(), 2)),
    ])


def _is_temp(path: Path) -> bool:
    """A file `files.replaced` was writing when its run was killed."""
    return path.name.startswith(".") and path.name.endswith(".part")


def _write_text(path: Path, text: str) -> None:
    with replaced(path) as temp:
        temp.write_text(text, encoding="utf-8")


class ShardWriter:
    """One shard, streamed to a temp file in row groups; `commit` renames it."""

    def __init__(self, folder: Path, number: int, settings: Settings, dim: int):
        pa = require_pyarrow()
        import pyarrow.parquet as pq

        self.path = folder / shard_name(number)
        self._stack = contextlib.ExitStack()
        self._temp = self._stack.enter_context(replaced(self.path))
        self._schema = schema(dim)
        self._writer = pq.ParquetWriter(self._temp, self._schema)
        self._constant = dict(
            model=settings.model, weights=settings.weights, pooling=settings.pooling,
        )
        self._size = list(settings.image_size)
        self._pa = pa
        self._paths: list[str] = []
        self._embeddings: list[np.ndarray] = []
        self.rows = 0
        self.errors: list[tuple[str, str]] = []

    def add(self, paths: Sequence[str], embeddings: np.ndarray) -> None:
        self._paths.extend(paths)
        self._embeddings.append(np.asarray(embeddings, np.float32))
        if len(self._paths) >= ROW_GROUP_ROWS:
            self._flush()

    def add_error(self, path: str, reason: str) -> None:
        self.errors.append((path, reason))

    def _flush(self) -> None:
        if not self._paths:
            return
        pa, n = self._pa, len(self._paths)
        flat = np.concatenate(self._embeddings).reshape(-1)
        dim = self._schema.field("embedding").type.list_size
        columns = {
            "path": pa.array([printable(p) for p in self._paths], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
            **{key: pa.array([value] * n, pa.string()) for key, value in self._constant.items()},
            "image_size": pa.array([self._size] * n, pa.list_(pa.int32(), 2)),
        }
        self._writer.write_table(pa.table(columns, schema=self._schema))
        self.rows += n
        self._paths, self._embeddings = [], []

    def commit(self) -> None:
        """Write what is left and rename the shard into place."""
        self._flush()
        self._writer.close()
        self._stack.close()  # fsync, mode, rename

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self._temp.unlink()
        self._stack.pop_all()


class FeatureStore:
    """An output folder opened for one run: what is done, and commits.

    `check` validates the folder against a run without writing (call it
    before building the model); `open` then takes the lock, removes temp
    files of killed runs, and writes the index.
    """

    def __init__(self, folder: Path, settings: Settings, plan: Plan, *, dim: int,
                 arguments: dict[str, Any]):
        self.folder, self.settings, self.plan = folder, settings, plan
        self.dim, self.arguments = dim, arguments
        self.shards: dict[int, dict[str, Any]] = {}
        self._lock = None

    # ---- before any work: is this folder ours to write?

    @staticmethod
    def check(folder: Path, settings: Settings, plan: Plan, *, overwrite: bool) -> None:
        """Raise if `folder` cannot take this run (see `_refusal`); writes nothing."""
        require_pyarrow()
        message = _refusal(folder, settings, plan, overwrite=overwrite)
        if message:
            raise InvalidArgumentError(message)

    @classmethod
    def open(cls, folder: Path, settings: Settings, plan: Plan, *, dim: int,
             arguments: dict[str, Any], overwrite: bool) -> FeatureStore:
        from filelock import FileLock, Timeout

        folder.mkdir(exist_ok=True)
        store = cls(folder, settings, plan, dim=dim, arguments=arguments)
        lock = FileLock(str(folder / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout as error:
            raise InvalidArgumentError(
                f"`out` must not be in use by another run: {folder} is locked ({LOCK_NAME}). "
                f"Received: out={os.fspath(folder)!r}. Wait for that run, or write elsewhere."
            ) from error
        store._lock = lock
        try:
            cls.check(folder, settings, plan, overwrite=overwrite)  # again, under the lock
            for leftover in filter(_is_temp, folder.iterdir()):  # from killed runs
                leftover.unlink()
            if overwrite:
                for path in folder.iterdir():
                    if _SHARD.match(path.name) or path.name in (INDEX_NAME, ERRORS_NAME):
                        path.unlink()
            store._load_finished(dim)
            store._write_index()
            store._write_errors()
        except BaseException:
            store.close()
            raise
        return store

    def _load_finished(self, dim: int) -> None:
        index = _read_index(self.folder)
        if index is None:
            return
        if index.get("embedding_dim") not in (None, dim):
            raise InvalidArgumentError(
                f"`out` holds embeddings of {index['embedding_dim']} values, this model gives "
                f"{dim}. Received: out={os.fspath(self.folder)!r}. Write to a new folder, "
                "or pass overwrite=True to replace it."
            )
        import pyarrow.parquet as pq

        for entry in index.get("shards", []):
            path = self.folder / entry["file"]
            try:  # a shard the index lists but that is gone or damaged is written again
                ok = pq.read_metadata(path).num_rows == entry["rows"]
            except (OSError, ValueError):
                ok = False
            if ok:
                self.shards[entry["shard"]] = entry

    # ---- the run

    def pending(self) -> list[int]:
        """Shards still to write, in order."""
        return [k for k in range(self.plan.shard_count) if k not in self.shards]

    def writer(self, shard: int) -> ShardWriter:
        return ShardWriter(self.folder, shard, self.settings, self.dim)

    def commit(self, shard: int, writer: ShardWriter) -> None:
        writer.commit()
        positions = self.plan.positions(shard)
        self.shards[shard] = dict(
            shard=shard, file=writer.path.name, first=positions.start, images=len(positions),
            rows=writer.rows, errors=[list(e) for e in writer.errors],
        )
        self._write_index()
        if writer.errors:
            self._write_errors()

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.plan.shard_count

    def totals(self) -> tuple[int, int]:
        """(rows, errors) over the finished shards."""
        entries = self.shards.values()
        return sum(e["rows"] for e in entries), sum(len(e["errors"]) for e in entries)

    def _write_index(self) -> None:
        rows, errors = self.totals()
        index = dict(
            format=FORMAT,
            settings=self.settings.as_json(),
            embedding_dim=self.dim,
            images=len(self.plan.paths),
            images_digest=self.plan.digest,
            shard_size=self.plan.shard_size,
            shard_count=self.plan.shard_count,
            complete=self.complete,
            rows=rows,
            errors=errors,
            errors_file=ERRORS_NAME,
            arguments=self.arguments,
            shards=[self.shards[k] for k in sorted(self.shards)],
        )
        _write_text(self.folder / INDEX_NAME, json.dumps(index, indent=1, ensure_ascii=True) + "\n")

    def _write_errors(self) -> None:
        text = io.StringIO()
        out = csv.writer(text)
        out.writerow(["path", "reason"])
        for shard in sorted(self.shards):
            for path, reason in self.shards[shard]["errors"]:
                out.writerow([printable(path), printable(reason)])
        _write_text(self.folder / ERRORS_NAME, text.getvalue())

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _read_index(folder: Path) -> dict[str, Any] | None:
    path = folder / INDEX_NAME
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise ValueError(f"format {index.get('format')!r}")
        Settings.from_json(index["settings"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidArgumentError(
            f"`out` must be a folder written by `extract_features` (`resnet-keras features`): {path} is "
            f"not a readable index ({error}). Received: out={os.fspath(folder)!r}. "
            "Write to a new folder, or pass overwrite=True to replace it."
        ) from error
    return index


def _refusal(folder: Path, settings: Settings, plan: Plan, *, overwrite: bool) -> str | None:
    """Why this run must not write into `folder`, or None."""
    where = f"Received: out={os.fspath(folder)!r}."
    if folder.exists() and not folder.is_dir():
        return f"`out` must be a folder for Parquet output (or end with .npz). {where}"
    if not folder.parent.is_dir():
        return f"`out` must be in an existing folder. {where} Create {folder.parent} first."
    if not folder.exists() or overwrite:
        return None
    index = _read_index(folder)
    if index is None:
        if any(not (_is_temp(p) or p.name.startswith(LOCK_NAME)) for p in folder.iterdir()):
            return (
                f"`out` must be a new or empty folder, or one written by `extract_features` "
                f"(it has {INDEX_NAME}). {where} Choose another folder."
            )
        return None
    old = Settings.from_json(index["settings"])
    remedy = "Write to a new folder, or pass overwrite=True to replace its features."
    differences = [
        f"{field.name} {getattr(old, field.name)!r} there, {getattr(settings, field.name)!r} now"
        for field in dataclasses.fields(Settings)
        if getattr(old, field.name) != getattr(settings, field.name)
    ]
    if differences:
        return (
            f"`out` holds features made with other settings; they must not be mixed: "
            f"{'; '.join(differences)}. {where} {remedy}"
        )
    if index.get("images_digest") != plan.digest or index.get("shard_size") != plan.shard_size:
        return (
            f"`out` holds features of another image list or shard size ({index.get('images')} "
            f"images, shard_size={index.get('shard_size')} there; {len(plan.paths)} images, "
            f"shard_size={plan.shard_size} now): a rerun resumes only the same list. {where} {remedy}"
        )
    if settings.weights_hash == "none" and index.get("shards"):
        return (
            "`out` holds features of a model with random weights (weights=None), which a rerun "
            f"cannot reproduce, so it is not resumed. {where} {remedy}"
        )
    return None


# --------------------------------------------------------------------------
# The records of an extraction: the settings that decide its numbers and the
# ordered image list cut into shards. `plan` makes them, `store` keeps them in a
# Parquet folder's index and holds a rerun to them.

@dataclasses.dataclass(frozen=True)
class Settings:
    """What decides the numbers in an output; a rerun must match to add to it."""

    model: str
    weights: str  # the tag, the path as given, or "none" (or a fine-tuned model's RUN_DIR)
    weights_hash: str  # of the file the model loaded; "none" for random weights
    pooling: str
    image_size: tuple[int, int]  # (height, width)
    preprocessing: str | None
    precision: str
    # The eval transform's shorter side before the center crop (None: a plain
    # resize). Folders written before it was recorded were read with a plain resize.
    resize_size: int | None = None
    calibration: str = "none"  # int8: a digest of the calibration files, in order

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "image_size": list(self.image_size)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(**{**data, "image_size": tuple(data["image_size"])})


@dataclasses.dataclass(frozen=True)
class Plan:
    """The ordered image list, cut into shards by position."""

    paths: tuple[str, ...]  # as given; the output shows them through `printable`
    shard_size: int

    @property
    def shard_count(self) -> int:
        return -(-len(self.paths) // self.shard_size)

    @property
    def digest(self) -> str:
        """sha256 of the ordered list: a rerun must list the same images."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
        return f"sha256:{digest.hexdigest()}"

    def shard_of(self, position: int) -> int:
        return position // self.shard_size

    def positions(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, len(self.paths)))


# --------------------------------------------------------------------------
# Where embeddings go: the sink `out` chooses, and the one table of what each takes.
#
# - `parquet` (`out` a folder): shards streamed as they fill, resumable,
#   unreadable images listed in `_errors.csv` (`store.py`); local or on Ray.
# - `npz` (`out` ending in .npz): one file, written when every image is
#   embedded, for small runs; every image must be readable (headers checked
#   before the model is built), so there is no errors file to read.
#
# `SINKS` and `ENGINE_OPTIONS` are the capability table: an option of
# `extract_features` that a sink (or engine) does not take is refused by
# `check_options` before any work, in the API's words (the command line says
# them as flags). What they have in common: every Predictor precision, int8
# with a calibration set (read once on the driver, shipped to Ray's actors).
#
# Plain data at the top (no NumPy): the command line reads it for `--help`.

@dataclasses.dataclass(frozen=True)
class Sink:
    """One kind of output.

    Attributes:
        name: "parquet" or "npz".
        what: The output in words, for messages and help.
        options: Options of `extract_features` that only this sink takes.
        engines: The engines that can feed it.
    """

    name: str
    what: str
    options: tuple[str, ...]
    engines: tuple[str, ...]


SINKS = MappingProxyType({
    "parquet": Sink("parquet", "Parquet output (`out` a folder)", ("shard_size", "overwrite"), ("local", "ray")),
    "npz": Sink("npz", "an .npz file (`out` ending in .npz)", (), ("local",)),
})
# Options only an engine takes: Ray's placement (RayOptions' fields, as the CLI's flags name them).
ENGINE_OPTIONS = MappingProxyType({"local": (), "ray": ("address", "actors", "cpus_per_actor", "gpus_per_actor")})


def sink_for(out: str | os.PathLike) -> Sink:
    """The sink `out` names: an .npz file (any case), else a folder of Parquet shards."""
    return SINKS["npz"] if Path(out).suffix.lower() == ".npz" else SINKS["parquet"]


def check_options(sink: Sink, engine: str, given: dict[str, Any], out: str | os.PathLike) -> None:
    """Refuse what `sink` and `engine` do not take; `given` holds the options set (not left at their default)."""
    where = f"out={os.fspath(out)!r}"
    for name, value in given.items():
        takers = [s.what for s in SINKS.values() if name in s.options]
        if takers and name not in sink.options:
            raise InvalidArgumentError(
                f"`{name}` applies only to {' or '.join(takers)}. Received: {name}={value!r}, {where}. "
                "Leave it out, or change `out`.")
    if engine not in sink.engines:
        able = [s.what for s in SINKS.values() if engine in s.engines]
        raise InvalidArgumentError(
            f"`engine` must be one of {sink.engines} for {sink.what}. Received: engine={engine!r}, {where}. "
            f"Write {' or '.join(able)} for engine={engine!r}.")
    for other, names in ENGINE_OPTIONS.items():
        misplaced = [n for n in names if n in given and other != engine]
        if misplaced:
            received = ", ".join(f"{n}={given[n]!r}" for n in misplaced)
            raise InvalidArgumentError(
                f"{', '.join(f'`{n}`' for n in misplaced)} appl{'ies' if len(misplaced) == 1 else 'y'} to "
                f"engine={other!r} only. "
                f"Received: engine={engine!r}, {received}. Pass engine={other!r}, or leave them out.")


class NpzFile:
    """The .npz sink as the engines' writer sees a store: one shard of every image, written at commit.

    An unreadable image stops the run (`ImageError`): an .npz has no errors file.
    """

    def __init__(self, out: Path, settings, plan):
        self.out, self.settings, self.plan = out, settings, plan
        self.shards: dict[int, Any] = {}
        self.rows = 0

    @staticmethod
    def check(out: Path) -> None:
        """`out` can be written: a file path in an existing folder."""
        if not out.parent.is_dir() or out.is_dir():
            raise InvalidArgumentError(
                f"`out` must be a file path in an existing folder. Received: out={os.fspath(out)!r}. "
                "Create the folder first.")

    def pending(self) -> list[int]:
        return [0]

    def writer(self, shard: int) -> _Rows:
        return _Rows()

    def commit(self, shard: int, rows: _Rows) -> None:
        import numpy as np

        from ..files import atomic_write
        from ..images import printable

        features = np.concatenate(rows.embeddings) if rows.embeddings else np.zeros((0, 0), np.float32)
        # Unicode arrays only: np.load(path, allow_pickle=False) reads every key.
        arrays = dict(
            features=features, paths=np.array([printable(p) for p in rows.paths], dtype=str),
            model=np.array(self.settings.model), weights=np.array(self.settings.weights),
            pooling=np.array(self.settings.pooling), image_size=np.array(self.settings.image_size),
        )
        with atomic_write(self.out) as f:
            np.savez(f, **arrays)
        self.shards[shard] = rows
        self.rows = len(rows.paths)

    def totals(self) -> tuple[int, int]:
        return self.rows, 0

    def close(self) -> None:
        pass


class _Rows:
    """The rows of an .npz, gathered in memory."""

    path = None

    def __init__(self):
        self.paths: list[str] = []
        self.embeddings: list = []

    def add(self, paths, embeddings) -> None:
        self.paths.extend(paths)
        self.embeddings.append(embeddings)

    def add_error(self, path: str, reason: str) -> None:
        from ..images import image_error

        raise image_error(path, reason)

    def abandon(self) -> None:
        pass
