"""The records of an extraction: the settings that decide its numbers and the
ordered image list cut into shards. `plan` makes them, `store` keeps them in a
Parquet folder's index and holds a rerun to them."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any


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
