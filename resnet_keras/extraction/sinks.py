"""Where embeddings go: the sink `out` chooses, and the one table of what each takes.

- `parquet` (`out` a folder): shards streamed as they fill, resumable,
  unreadable images listed in `_errors.csv` (`store.py`); local or on Ray.
- `npz` (`out` ending in .npz): one file, written when every image is
  embedded, for small runs; every image must be readable (headers checked
  before the model is built), so there is no errors file to read.

`SINKS` and `ENGINE_OPTIONS` are the capability table: an option of
`extract_features` that a sink (or engine) does not take is refused by
`check_options` before any work, in the API's words (the command line says
them as flags). What they have in common: every Predictor precision, int8
with a calibration set (read once on the driver, shipped to Ray's actors).

Plain data at the top (no NumPy): the command line reads it for `--help`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InvalidArgumentError


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

        from .._text import printable
        from ..files import atomic_write

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
