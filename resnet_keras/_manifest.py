"""The weights manifest: typed, frozen records, validated when loaded.

`weights_manifest.json` (top level of the repository, shipped inside the
package) lists per model, per tag (`"imagenet"`, ...), per file (`top`,
`notop`) where to get a weights file and how to verify it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ManifestError, UnknownWeightsError

SHIPPED_MANIFEST = Path(__file__).with_name("weights_manifest.json")
SCHEMA_VERSION = 1
HASH_LENGTHS = {"md5": 32, "sha256": 64}
FILE_KINDS = ("top", "notop")


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file."""

    file_name: str
    urls: tuple[str, ...]
    hash: str  # "md5:<hex>" or "sha256:<hex>", lower case
    num_params: int | None = None
    size: int | None = None

    @property
    def hash_algorithm(self) -> str:
        return self.hash.split(":", 1)[0]

    @property
    def hash_hex(self) -> str:
        return self.hash.split(":", 1)[1]


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One set of pretrained weights of a model (a manifest tag)."""

    model: str
    tag: str
    files: Mapping[str, WeightsFile]
    default: bool = False
    source: str = ""
    preprocessing: str = ""
    input_size: int | None = None
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def file(self, include_top: bool) -> WeightsFile:
        kind = "top" if include_top else "notop"
        if kind not in self.files:
            raise UnknownWeightsError(
                f"Weights '{self.tag}' of {self.model} have no file for "
                f"include_top={include_top}. Received: include_top="
                f"{include_top}. Available: {sorted(self.files)}."
            )
        return self.files[kind]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """All entries, as `entries[model][tag]`."""

    entries: Mapping[str, Mapping[str, WeightsEntry]]

    def tags(self, model: str) -> list[str]:
        return sorted(self.entries.get(model, {}))

    def is_tag(self, model: str, tag: str) -> bool:
        return tag in self.entries.get(model, {})

    def entry(self, model: str, tag: str) -> WeightsEntry:
        tags = self.tags(model)
        if tag not in tags:
            hint = difflib.get_close_matches(tag, tags, n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            available = ", ".join(repr(t) for t in tags) or "none"
            raise UnknownWeightsError(
                f"`weights` must be None, a path to an existing weights file "
                f"or a weights tag of {model} (available: {available})."
                f"{suggestion} Received: weights={tag!r}"
            )
        return self.entries[model][tag]


def _reject_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ManifestError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _check_file_name(value: Any, where: str) -> str:
    # The name becomes a path inside the cache: one plain component only.
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or re.search(r"[/\\:\x00]", value)
    ):
        raise ManifestError(
            f"{where}.file_name must be a plain file name (no folders, drive "
            f"letters or NUL). Received: file_name={value!r}"
        )
    return value


def _check_hash(value: Any, where: str) -> str:
    text = value.lower() if isinstance(value, str) else ""
    algorithm, _, digest = text.partition(":")
    if algorithm not in HASH_LENGTHS or not re.fullmatch(
        f"[0-9a-f]{{{HASH_LENGTHS[algorithm]}}}", digest
    ):
        raise ManifestError(
            f"{where}.hash must be 'md5:' + 32 hex digits or 'sha256:' + 64 "
            f"hex digits. Received: hash={value!r}"
        )
    return text


def _check_url(value: Any, where: str) -> str:
    from ._download import check_url  # the URL policy lives with the downloader

    return check_url(value, where)


def _check_keys(obj: Any, where: str, required: set, optional: set) -> dict:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where} must be an object. Received: {obj!r}")
    missing = required - obj.keys()
    unknown = obj.keys() - required - optional
    if missing or unknown:
        raise ManifestError(
            f"{where} needs the fields {sorted(required)} and may have "
            f"{sorted(optional)}. Received: missing={sorted(missing)}, "
            f"unknown={sorted(unknown)}"
        )
    return obj


def _optional_int(obj: dict, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(
            f"{where}.{key} must be a positive integer. Received: {value!r}"
        )
    return value


def _parse_file(obj: Any, where: str) -> WeightsFile:
    _check_keys(obj, where, {"file_name", "urls", "hash"}, {"num_params", "size"})
    urls = obj["urls"]
    if not isinstance(urls, list) or not urls:
        raise ManifestError(
            f"{where}.urls must be a non-empty list. Received: urls={urls!r}"
        )
    return WeightsFile(
        file_name=_check_file_name(obj["file_name"], where),
        urls=tuple(_check_url(u, f"{where}.urls") for u in urls),
        hash=_check_hash(obj["hash"], where),
        num_params=_optional_int(obj, "num_params", where),
        size=_optional_int(obj, "size", where),
    )


def _parse_entry(model: str, tag: str, obj: Any) -> WeightsEntry:
    where = f"models.{model}.{tag}"
    _check_keys(
        obj,
        where,
        {"files"},
        {"default", "source", "preprocessing", "input_size", "metrics", "notes"},
    )
    files = obj["files"]
    if not isinstance(files, dict) or not files or set(files) - set(FILE_KINDS):
        raise ManifestError(
            f"{where}.files must map some of {list(FILE_KINDS)} to files. "
            f"Received: {sorted(files) if isinstance(files, dict) else files!r}"
        )
    metrics = obj.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool)
        for v in metrics.values()
    ):
        raise ManifestError(
            f"{where}.metrics must map names to numbers. Received: {metrics!r}"
        )
    for key in ("source", "preprocessing"):
        if not isinstance(obj.get(key, ""), str):
            raise ManifestError(
                f"{where}.{key} must be a string. Received: {obj[key]!r}"
            )
    if not isinstance(obj.get("default", False), bool):
        raise ManifestError(
            f"{where}.default must be true or false. Received: {obj['default']!r}"
        )
    return WeightsEntry(
        model=model,
        tag=tag,
        files=MappingProxyType(
            {kind: _parse_file(f, f"{where}.files.{kind}") for kind, f in files.items()}
        ),
        default=obj.get("default", False),
        source=obj.get("source", ""),
        preprocessing=obj.get("preprocessing", ""),
        input_size=_optional_int(obj, "input_size", where),
        metrics=MappingProxyType(dict(metrics)),
    )


def parse_manifest(text: str, source: str = "<string>") -> Manifest:
    """Parse and validate manifest JSON text."""
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
        _check_keys(data, "manifest", {"schema_version", "models"}, {"comment"})
        if data["schema_version"] != SCHEMA_VERSION:
            raise ManifestError(
                f"schema_version must be {SCHEMA_VERSION}. Received: "
                f"{data['schema_version']!r}"
            )
        models = data["models"]
        if not isinstance(models, dict):
            raise ManifestError(f"models must be an object. Received: {models!r}")
        entries = {}
        for model, tags in models.items():
            if not isinstance(tags, dict):
                raise ManifestError(
                    f"models.{model} must map tags to entries. Received: {tags!r}"
                )
            entries[model] = MappingProxyType(
                {tag: _parse_entry(model, tag, e) for tag, e in tags.items()}
            )
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"Weights manifest {source} is not valid JSON: {error}. "
            "Fix or remove the file."
        ) from error
    except ManifestError as error:
        raise ManifestError(f"Invalid weights manifest {source}: {error}") from error
    manifest = Manifest(MappingProxyType(entries))
    _check_unique_file_names(manifest, source)
    return manifest


def _check_unique_file_names(manifest: Manifest, source: str) -> None:
    hashes: dict[str, str] = {}
    for tags in manifest.entries.values():
        for entry in tags.values():
            for f in entry.files.values():
                if hashes.setdefault(f.file_name, f.hash) != f.hash:
                    raise ManifestError(
                        f"Invalid weights manifest {source}: two entries name "
                        f"the file {f.file_name!r} with different hashes "
                        f"({hashes[f.file_name]} and {f.hash}). Give each "
                        "file its own name."
                    )


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(
            f"Cannot read the weights manifest {path}: {error.strerror}. "
            "Check the path."
        ) from error
    return parse_manifest(text, source=str(path))


def merge(base: Manifest, override: Manifest) -> Manifest:
    """Entries of `override` add to or replace those of `base`, per tag."""
    merged = {model: dict(tags) for model, tags in base.entries.items()}
    for model, tags in override.entries.items():
        merged.setdefault(model, {}).update(tags)
    manifest = Manifest(
        MappingProxyType({m: MappingProxyType(t) for m, t in merged.items()})
    )
    return manifest


_shipped: Manifest | None = None


def shipped_manifest() -> Manifest:
    global _shipped
    if _shipped is None:
        _shipped = read_manifest(SHIPPED_MANIFEST)
    return _shipped
