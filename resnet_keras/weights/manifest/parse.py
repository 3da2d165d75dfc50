"""Manifest JSON into frozen records: read, validated, merged.

`weights_manifest.json` (shipped at the top of the package) lists per
model, per tag (`"imagenet"`, ...), per file (`top`, `notop`) where to get
a weights file and how to verify it. `active_manifest` is what a call
sees: the shipped manifest, then `RESNET_KERAS_MANIFEST`, then `manifest=`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection

from . import hashes
from .records import FILE_KINDS, Manifest, WeightsEntry, WeightsFile
from .urls import check_url, invisible_or_control
from ..._text import did_you_mean, first_line
from ...errors import InvalidArgumentError, ManifestError

SHIPPED_MANIFEST = Path(__file__).parents[2] / "weights_manifest.json"
MANIFEST_ENV = "RESNET_KERAS_MANIFEST"
SCHEMA_VERSION = 1
# Names the cache uses for its own files beside a file NAME (download/
# housekeeping.py): temp downloads, locks, files set aside because they
# failed their hash, full-hash records of files with a prefix hash. A
# manifest may not claim them.
TEMP_SUFFIX, LOCK_SUFFIX, CORRUPT_SUFFIX, RECORD_SUFFIX = ".part", ".lock", ".corrupt", ".sha256"
RESERVED_SUFFIXES = (TEMP_SUFFIX, LOCK_SUFFIX, CORRUPT_SUFFIX, RECORD_SUFFIX)
# UTF-8 bytes, not characters: file systems limit a name to 255 bytes, and
# the cache adds a temp-file suffix of up to 40.
MAX_FILE_NAME = 200
# Upper bounds that make a hostile manifest cheap to refuse.
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILE_SIZE = 1 << 40
# Evaluation resize of an entry (a shorter side in pixels).
MAX_RESIZE = 4096
# Model keys and tags are plain identifiers, so they never look like paths.
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _reject_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ManifestError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _utf8_length(text: str) -> int | None:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        return None


def _check_file_name(value: Any, where: str) -> str:
    # The name becomes a path inside the cache: one plain component only,
    # not hidden (the cache's own temp and lock files start with a dot).
    length = _utf8_length(value) if isinstance(value, str) else None
    if (
        length is None
        or value in ("", ".", "..")
        or value.startswith((".", " ", "-"))
        or value != value.strip()
        or length > MAX_FILE_NAME
        or re.search(r"[/\\:*?\"<>|]", value)
        or invisible_or_control(value)
        or value.lower().endswith(RESERVED_SUFFIXES)
    ):
        shown = value if length is not None or not isinstance(value, str) else (
            value.encode("utf-8", "backslashreplace").decode()
        )
        raise ManifestError(
            f"{where}.file_name must be a plain file name of at most "
            f"{MAX_FILE_NAME} bytes in UTF-8: no folders, drive letters, "
            "control, bidi or other invisible characters, not starting with "
            f"'.', '-' or a space, not ending in {', '.join(RESERVED_SUFFIXES)}."
            f" Received: file_name={shown!r}"
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
    name, _, digest = text.partition(":")
    kind = hashes.KINDS.get(name)
    if kind is None or not re.fullmatch(f"[0-9a-f]{{{kind.digits[0]},{kind.digits[1]}}}", digest):
        shown = repr(value) if len(repr(value)) <= 100 else repr(value)[:97] + "..."
        raise ManifestError(f"{where}.hash must be {hashes.accepted()}. Received: hash={shown}")
    return text


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


def _optional_int(obj: dict, key: str, where: str, maximum: int = MAX_FILE_SIZE) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ManifestError(
            f"{where}.{key} must be a positive integer of at most {maximum:,}. "
            f"Received: {shown}"
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
        urls=tuple(check_url(u, f"{where}.urls") for u in urls),
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
        {"default", "source", "preprocessing", "input_size", "resize_size", "metrics"},
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
    input_size = _optional_int(obj, "input_size", where)
    resize_size = _optional_int(obj, "resize_size", where, maximum=MAX_RESIZE)
    if resize_size is not None and resize_size < (input_size or 1):
        raise ManifestError(
            f"{where}.resize_size (the shorter side before the center crop) must be "
            f"at least input_size ({input_size}). Received: resize_size={resize_size}"
        )
    if not isinstance(obj.get("default", False), bool):
        raise ManifestError(
            f"{where}.default must be true or false. Received: {obj['default']!r}"
        )
    return WeightsEntry(
        given=frozenset(obj),
        model=model,
        tag=tag,
        files=MappingProxyType(
            {kind: _parse_file(f, f"{where}.files.{kind}") for kind, f in files.items()}
        ),
        default=obj.get("default", False),
        source=obj.get("source", ""),
        preprocessing=obj.get("preprocessing", ""),
        input_size=input_size,
        resize_size=resize_size,
        metrics=MappingProxyType(dict(metrics)),
    )


def _parse_models(models: Any) -> dict:
    if not isinstance(models, dict):
        raise ManifestError(f"models must be an object. Received: {models!r}")
    entries = {}
    for model, tags in models.items():
        _check_key(model, "a model key")
        if not isinstance(tags, dict):
            raise ManifestError(f"models.{model} must map tags to entries. Received: {tags!r}")
        for tag in tags:
            _check_key(tag, f"a tag of models.{model}")
        entries[model] = MappingProxyType({tag: _parse_entry(model, tag, e) for tag, e in tags.items()})
        defaults = [tag for tag, e in entries[model].items() if e.default]
        if len(defaults) > 1:
            raise ManifestError(
                f"models.{model} may mark at most one tag as default. Received: default tags {defaults}"
            )
    return entries


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
        entries = _parse_models(data["models"])
    except ManifestError as error:
        raise ManifestError(f"Invalid weights manifest {source}: {error}") from error
    except ValueError as error:  # JSONDecodeError, or an integer of 5,000 digits
        raise ManifestError(
            f"Weights manifest {source} is not valid JSON: {first_line(error)}. "
            "Fix or remove the file."
        ) from error
    except RecursionError as error:
        raise ManifestError(
            f"Weights manifest {source} is nested too deeply to be a manifest."
        ) from error
    manifest = Manifest(MappingProxyType(entries))
    manifest.check_unique_file_names(source)
    return manifest


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise IsADirectoryError(0, "not a regular file")
        with open(path, "rb") as f:  # a bounded read: a manifest is small
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise ManifestError(
            f"Cannot read the weights manifest {path}: {error.strerror or error}. "
            "Check the path (it must be a JSON file)."
        ) from error
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"Weights manifest {path} is larger than {MAX_MANIFEST_BYTES:,} bytes; "
            "a manifest lists files, it does not hold them. Check the path."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(
            f"Weights manifest {path} is not UTF-8 text (byte {error.start}); "
            "save it as UTF-8 JSON."
        ) from error
    return parse_manifest(text, source=str(path))


_shipped: Manifest | None = None


def shipped_manifest() -> Manifest:
    global _shipped
    if _shipped is None:
        _shipped = read_manifest(SHIPPED_MANIFEST)
    return _shipped


def active_manifest(manifest: Any = None, *, models: Collection[str]) -> Manifest:
    """Shipped manifest, then `RESNET_KERAS_MANIFEST` paths, then `manifest=`.

    `RESNET_KERAS_MANIFEST` holds one path or several separated by
    `os.pathsep` (':' on Linux and macOS, ';' on Windows); later ones win.
    Every model key must be one of `models` (the caller's registry names).
    """
    result = shipped_manifest()
    for path in filter(None, os.environ.get(MANIFEST_ENV, "").split(os.pathsep)):
        result = result.merged(read_manifest(path), source=path)
    if manifest is not None:
        source = "manifest="
        if not isinstance(manifest, Manifest):
            if not isinstance(manifest, (str, os.PathLike)):
                raise InvalidArgumentError(
                    "`manifest` must be a path to a manifest JSON file or a "
                    f"Manifest. Received: manifest={manifest!r}"
                )
            source = os.fspath(manifest)
            manifest = read_manifest(manifest)
        result = result.merged(manifest, source=source)
    for model in result.models():
        if model not in models:
            raise ManifestError(
                f"The weights manifest has an entry for model {model!r}, which is "
                f"not a model of resnet_keras (keys are lower case registry names "
                f"such as 'resnet50').{did_you_mean(model.lower(), models)} Received: "
                f"model key {model!r}. Fix the key in your manifest ({MANIFEST_ENV} or manifest=)."
            )
    return result
