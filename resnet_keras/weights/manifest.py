"""The weights manifest: parsed, validated and merged into frozen records.

`weights_manifest.json` (top level of the repository, shipped inside the
package) lists per model, per tag (`"imagenet"`, ...), per file (`top`,
`notop`) where to get a weights file and how to verify it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ManifestError
from .records import FILE_KINDS, PREFIX_KIND, Manifest, WeightsEntry, WeightsFile
from .urls import check_url, invisible_or_control

SHIPPED_MANIFEST = Path(__file__).parents[1] / "weights_manifest.json"  # shipped at the package top
SCHEMA_VERSION = 1
# Hex digits per hash kind, (fewest, most). The prefix kind is weaker: 8
# digits are 32 bits (what torchvision publishes); 64 would be plain sha256.
HASH_LENGTHS = {"md5": (32, 32), "sha256": (64, 64), PREFIX_KIND: (8, 63)}
# Names the cache uses for its own files (temp downloads, locks, files
# set aside because they failed their hash, full-hash records of files
# with a prefix hash); a manifest may not claim them.
RESERVED_SUFFIXES = (".part", ".lock", ".corrupt", ".sha256")
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
        or not isinstance(value, str)
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
    kind, _, digest = text.partition(":")
    fewest, most = HASH_LENGTHS.get(kind, (0, 0))
    if not (fewest and re.fullmatch(f"[0-9a-f]{{{fewest},{most}}}", digest)):
        shown = repr(value) if len(repr(value)) <= 100 else repr(value)[:97] + "..."
        raise ManifestError(
            f"{where}.hash must be 'md5:' + 32 hex digits, 'sha256:' + 64 hex "
            f"digits, or '{PREFIX_KIND}:' + 8 to 63 hex digits (the weaker kind: "
            "a prefix of the SHA-256, as torchvision publishes). Received: "
            f"hash={shown}"
        )
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
    except ManifestError as error:
        raise ManifestError(f"Invalid weights manifest {source}: {error}") from error
    except ValueError as error:  # JSONDecodeError, or an integer of 5,000 digits
        raise ManifestError(
            f"Weights manifest {source} is not valid JSON: {_first_line(error)}. "
            "Fix or remove the file."
        ) from error
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


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
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


def _merge_entry(base: WeightsEntry | None, override: WeightsEntry) -> WeightsEntry:
    """`override`'s files replace `base`'s per file (top, notop); its other
    fields replace `base`'s where the override spells them out."""
    if base is None:
        return override
    fields = {key: getattr(override, key) for key in override.given - {"files"}}
    return dataclasses.replace(
        base,
        files=MappingProxyType({**base.files, **override.files}),
        given=base.given | override.given,
        **fields,
    )


def merge(base: Manifest, override: Manifest, source: str = "<merged>") -> Manifest:
    """Entries of `override` add to or update those of `base`.

    Per file: a user entry that names only the `notop` file of
    resnet50/imagenet (a mirror, say) keeps the shipped `top` file. A
    default tag in `override` takes over from the one in `base`. The result
    must still give each cached file name one hash, because the name is the
    file's place in the cache.
    """
    merged = {model: dict(tags) for model, tags in base.entries.items()}
    for model, tags in override.entries.items():
        target = merged.setdefault(model, {})
        if any(entry.default for entry in tags.values()):
            target.update(
                {t: dataclasses.replace(e, default=False) for t, e in target.items()}
            )
        for tag, entry in tags.items():
            target[tag] = _merge_entry(target.get(tag), entry)
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
