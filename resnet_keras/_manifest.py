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
# Names the cache uses for its own files (temp downloads, locks, files
# set aside because they failed their hash); a manifest may not claim them.
RESERVED_SUFFIXES = (".part", ".lock", ".corrupt")
MAX_FILE_NAME = 200  # leaves room for the temp-file suffix under NAME_MAX 255
# Model keys and tags are plain identifiers, so they never look like paths.
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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

    def models(self) -> list[str]:
        return sorted(self.entries)

    def tags(self, model: str) -> list[str]:
        return sorted(self.entries.get(model, {}))

    def check_model(self, model: str) -> None:
        """Raise UnknownWeightsError, with the valid names, if `model` has no entry."""
        if model not in self.entries:
            models = self.models()
            hint = difflib.get_close_matches(str(model), models, n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UnknownWeightsError(
                f"The weights manifest has no model {model!r} (models with "
                f"weights: {', '.join(models) or 'none'}).{suggestion} "
                f"Received: model={model!r}"
            )

    def default_tag(self, model: str) -> str:
        """The tag marked `"default": true` (the last one after merges), else 'imagenet'."""
        self.check_model(model)
        defaults = [t for t, e in self.entries[model].items() if e.default]
        if defaults:
            return defaults[-1]
        tags = list(self.entries[model])
        return "imagenet" if "imagenet" in tags else tags[0]

    def files(self):
        """Every (entry, kind, WeightsFile), in manifest order."""
        for tags in self.entries.values():
            for entry in tags.values():
                for kind, wfile in entry.files.items():
                    yield entry, kind, wfile

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
    # The name becomes a path inside the cache: one plain component only,
    # not hidden (the cache's own temp and lock files start with a dot).
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or value.startswith((".", " ", "-"))
        or value != value.strip()
        or len(value) > MAX_FILE_NAME
        or re.search(r"[/\\:*?\"<>|\x00-\x1f\x7f]", value)
        or value.lower().endswith(RESERVED_SUFFIXES)
    ):
        raise ManifestError(
            f"{where}.file_name must be a plain file name of at most "
            f"{MAX_FILE_NAME} characters: no folders, drive letters, control "
            f"characters or NUL, not starting with '.', '-' or a space, not "
            f"ending in {', '.join(RESERVED_SUFFIXES)}. Received: "
            f"file_name={value!r}"
        )
    return value


def _check_key(value: str, where: str) -> str:
    if not KEY_PATTERN.fullmatch(value):
        raise ManifestError(
            f"{where} must be a name of letters, digits and '_.+-' that starts "
            f"with a letter or digit. Received: {value!r}"
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
    for key in ("source", "preprocessing", "notes"):
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
    if not text.strip():
        raise ManifestError(
            f"Weights manifest {source} is empty; it must be a JSON object "
            f'with "schema_version": {SCHEMA_VERSION} and "models". Fix or '
            "remove the file."
        )
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
            _check_key(model, "a model key")
            if not isinstance(tags, dict):
                raise ManifestError(
                    f"models.{model} must map tags to entries. Received: {tags!r}"
                )
            for tag in tags:
                _check_key(tag, f"a tag of models.{model}")
            entries[model] = MappingProxyType(
                {tag: _parse_entry(model, tag, e) for tag, e in tags.items()}
            )
            defaults = [tag for tag, e in entries[model].items() if e.default]
            if len(defaults) > 1:
                raise ManifestError(
                    f"models.{model} may mark at most one tag as default. "
                    f"Received: default tags {defaults}"
                )
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"Weights manifest {source} is not valid JSON: {error}. "
            "Fix or remove the file."
        ) from error
    except ManifestError as error:
        raise ManifestError(f"Invalid weights manifest {source}: {error}") from error
    except RecursionError as error:
        raise ManifestError(
            f"Weights manifest {source} is nested too deeply to be a manifest."
        ) from error
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


def merge(base: Manifest, override: Manifest, source: str = "<merged>") -> Manifest:
    """Entries of `override` add to or replace those of `base`, per tag.

    A default tag in `override` takes over from the one in `base`. The
    result must still give each cached file name one hash, because the
    name is the file's place in the cache.
    """
    merged = {model: dict(tags) for model, tags in base.entries.items()}
    for model, tags in override.entries.items():
        target = merged.setdefault(model, {})
        if any(entry.default for entry in tags.values()):
            target.update(
                {t: dataclasses.replace(e, default=False) for t, e in target.items()}
            )
        target.update(tags)
    manifest = Manifest(
        MappingProxyType({m: MappingProxyType(t) for m, t in merged.items()})
    )
    _check_unique_file_names(manifest, source)
    return manifest


_shipped: Manifest | None = None


def shipped_manifest() -> Manifest:
    global _shipped
    if _shipped is None:
        _shipped = read_manifest(SHIPPED_MANIFEST)
    return _shipped
