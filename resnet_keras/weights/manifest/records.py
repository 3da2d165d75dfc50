"""The manifest: its frozen, typed records, the URL policy, and the JSON read into them.

A `Manifest` maps model -> tag -> `WeightsEntry`; an entry holds the
`WeightsFile` of each head (`top`, `notop`) with its URLs, hash and limits.
The records come first, then which URLs a manifest may name (and a server
redirect to), then the JSON read, validated and merged (`read_manifest`,
`parse_manifest`, `shipped_manifest`, `active_manifest`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import stat
import unicodedata
import urllib.parse
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection, Mapping

from ...errors import did_you_mean, first_line
from ...errors import InvalidArgumentError, ManifestError, UnknownWeightsError
from . import hashes
from .hashes import KINDS, HashKind


FILE_KINDS = ("top", "notop")
# Without a declared `size`, a float32 HDF5 weights file holds 4 bytes per
# parameter plus its layout (names, headers: under 1% for any ResNet); the
# allowance bounds what a download may write before its hash is checked.
BYTES_PER_PARAM = 4
LAYOUT_ALLOWANCE = 16 << 20
# With neither a size nor a parameter count, still a bound (the largest
# ResNet file, ResNet152 with a 21k-class head, is under 1 GB).
MAX_UNDECLARED_BYTES = 2 << 30
# keras' name for "the pretrained weights". On a model with no tag of that
# name it selects the model's default tag (ResNet18/34: torchvision's), so
# `weights="imagenet"` means the same thing on every model that has weights.
IMAGENET_TAG = "imagenet"


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file."""

    file_name: str
    urls: tuple[str, ...]
    hash: str  # "<kind>:<hex>", lower case, a kind of `hashes.KINDS`
    num_params: int | None = None
    size: int | None = None

    @property
    def hash_kind(self) -> str:
        """What the manifest declares: 'md5', 'sha256' or 'sha256-prefix'."""
        return self.hash.split(":", 1)[0]

    @property
    def kind(self) -> HashKind:
        return KINDS[self.hash_kind]

    @property
    def hash_algorithm(self) -> str:
        """The hashlib algorithm that computes the digest to compare."""
        return self.kind.algorithm

    @property
    def hash_hex(self) -> str:
        return self.hash.split(":", 1)[1]

    @property
    def weak_hash(self) -> bool:
        """Only a prefix of the digest is declared (a full-hash record backs it up)."""
        return self.kind.prefix

    @property
    def hash_text(self) -> str:
        """The declared hash as error messages show it, the weak kind named as such."""
        if self.weak_hash:
            return (
                f"{self.hash} (a weaker check: only the first {len(self.hash_hex)} "
                f"hex digits of the {self.kind.title} are published)"
            )
        return self.hash

    def matches(self, digest: str) -> bool:
        """True if `digest` (hex, of `hash_algorithm`) is the declared one."""
        if self.weak_hash:
            return digest.startswith(self.hash_hex)
        return digest == self.hash_hex

    @property
    def max_bytes(self) -> int:
        """Most bytes a download of this file may bring before it is refused."""
        if self.size is not None:
            return self.size
        if self.num_params is not None:
            return BYTES_PER_PARAM * self.num_params * 101 // 100 + LAYOUT_ALLOWANCE
        return MAX_UNDECLARED_BYTES


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
    # Evaluation resize: the shorter side goes to this size, then the center
    # `input_size` crop is taken (torchvision: 256 for V1, 232 for V2 weights).
    resize_size: int | None = None
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Fields the manifest spelled out (a user entry overrides only those).
    given: frozenset = dataclasses.field(default=frozenset(), compare=False, repr=False)

    def file(self, include_top: bool) -> WeightsFile:
        kind = "top" if include_top else "notop"
        if kind not in self.files:
            raise UnknownWeightsError(
                f"Weights '{self.tag}' of {self.model} have no file for "
                f"include_top={include_top}. Received: include_top="
                f"{include_top}. Available: {sorted(self.files)}."
            )
        return self.files[kind]

    def merged(self, override: WeightsEntry) -> WeightsEntry:
        """`override`'s files replace these per file (top, notop); its other
        fields replace these where the override spells them out."""
        fields = {key: getattr(override, key) for key in override.given - {"files"}}
        return dataclasses.replace(
            self,
            files=MappingProxyType({**self.files, **override.files}),
            given=self.given | override.given,
            **fields,
        )


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
            raise UnknownWeightsError(
                f"The weights manifest has no model {model!r} (models with "
                f"weights: {', '.join(models) or 'none'}).{did_you_mean(model, models)} "
                f"Received: model={model!r}"
            )

    def default_tag(self, model: str) -> str:
        """The tag marked `"default": true` (the last one after merges), else 'imagenet'."""
        tags = self.tags(model)  # a model without an entry has no weights here (its name is checked upstream)
        if not tags:
            raise UnknownWeightsError(
                f"`weights` needs a value for {model}: it has no pretrained weights in the manifest. "
                f"Received: model={model!r}. Pass the path of a weights file, or weights=None "
                "(random initialization)."
            )
        defaults = [t for t, e in self.entries[model].items() if e.default]
        if defaults:
            return defaults[-1]
        return IMAGENET_TAG if IMAGENET_TAG in tags else tags[0]

    def files(self):
        """Every (entry, kind, WeightsFile), in manifest order."""
        for tags in self.entries.values():
            for entry in tags.values():
                for kind, wfile in entry.files.items():
                    yield entry, kind, wfile

    def _selected(self, model: str, tag: str) -> str:
        """The tag that `tag` selects: itself, or the default one for IMAGENET_TAG."""
        tags = self.entries.get(model, {})
        if tag == IMAGENET_TAG and tag not in tags and tags:
            return self.default_tag(model)
        return tag

    def is_tag(self, model: str, tag: str) -> bool:
        return self._selected(model, tag) in self.entries.get(model, {})

    def entry(self, model: str, tag: str) -> WeightsEntry:
        """The entry `tag` selects ('imagenet' on a model without that tag: the default)."""
        tag = self._selected(model, tag)
        tags = self.tags(model)
        if tag not in tags:
            available = ", ".join(repr(t) for t in tags) or "none"
            raise UnknownWeightsError(
                f"`weights` must be None, a path to an existing weights file "
                f"or a weights tag of {model} (available: {available})."
                f"{did_you_mean(tag, tags)} Received: weights={tag!r}"
            )
        return self.entries[model][tag]

    def check_unique_file_names(self, source: str) -> None:
        """Each cached file name has one hash: the name is the file's place in the cache."""
        hashes: dict[str, str] = {}
        for _, _, f in self.files():
            if hashes.setdefault(f.file_name, f.hash) != f.hash:
                raise ManifestError(
                    f"Invalid weights manifest {source}: two entries name "
                    f"the file {f.file_name!r} with different hashes "
                    f"({hashes[f.file_name]} and {f.hash}). Give each "
                    "file its own name."
                )

    def merged(self, override: Manifest, source: str = "<merged>") -> Manifest:
        """Entries of `override` add to or update these.

        Per file: a user entry that names only the `notop` file of
        resnet50/imagenet (a mirror, say) keeps the shipped `top` file. A
        default tag in `override` takes over from the one here. The result
        must still give each cached file name one hash.
        """
        merged = {model: dict(tags) for model, tags in self.entries.items()}
        for model, tags in override.entries.items():
            target = merged.setdefault(model, {})
            if any(entry.default for entry in tags.values()):
                target.update({t: dataclasses.replace(e, default=False) for t, e in target.items()})
            for tag, entry in tags.items():
                target[tag] = target[tag].merged(entry) if tag in target else entry
        manifest = Manifest(MappingProxyType({m: MappingProxyType(t) for m, t in merged.items()}))
        manifest.check_unique_file_names(source)
        return manifest


# --------------------------------------------------------------------------
# The URL policy: which URLs a manifest may name and a server may redirect to.
#
# https anywhere; plain http to a loopback host (local mirrors, tests), or to
# any host with the RESNET_KERAS_ALLOW_HTTP=1 opt-in (corporate mirrors; the
# hash is still verified); file:// in manifests only; never credentials in a
# URL, never a redirect from https down to http (loopback included).

# Plain http to a host other than loopback: only a corporate mirror the
# user names, and only with this switch (the hash is still verified).
ALLOW_HTTP_ENV = "RESNET_KERAS_ALLOW_HTTP"


def invisible_or_control(text: str) -> bool:
    """Control (C0, C1), format (bidi overrides, zero-width), surrogate,
    private-use or unassigned characters, and line or paragraph separators:
    all of them can make a printed name lie about what it is."""
    return any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
               for ch in text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_allowed() -> bool:
    return os.environ.get(ALLOW_HTTP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _parts(url: Any):
    """(scheme, host) of an acceptable URL, or None (credentials, bad syntax)."""
    if not isinstance(url, str) or invisible_or_control(url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:  # e.g. 'https://[::1/x': an unclosed IPv6 bracket
        return None
    if parts.username or parts.password:
        return None
    return parts.scheme, host, parts.path


def _allowed(url: Any, *, allow_file: bool) -> bool:
    parts = _parts(url)
    if parts is None:
        return False
    scheme, host, path = parts
    return bool(
        (scheme == "https" and host)
        or (scheme == "http" and host and (_is_loopback(host) or http_allowed()))
        or (allow_file and scheme == "file" and path)
    )


def check_url(url: Any, where: str = "url") -> str:
    """https anywhere; http to loopback (or anywhere with the opt-in); file:// for local mirrors."""
    if not _allowed(url, allow_file=True):
        raise ManifestError(
            f"{where} must be an https:// URL without credentials (http:// "
            "only to 127.0.0.1, ::1 or localhost, or to any host with "
            f"{ALLOW_HTTP_ENV}=1; file:// for local mirrors). Received: {url!r}"
        )
    return url


def check_redirect(source: str, target: str) -> None:
    """A server's redirect: allowed URLs only, and never from https to http."""
    if not _allowed(target, allow_file=False):
        raise ManifestError(
            f"redirected to {target}, which the URL policy does not allow "
            "(https, or http to a loopback host); refused"
        )
    if urllib.parse.urlsplit(source).scheme == "https" and not target.startswith("https:"):
        raise ManifestError(
            f"redirected from https to plain http ({target}); refused, loopback "
            "included, so a mirror cannot reach services on this machine"
        )


# --------------------------------------------------------------------------
# Manifest JSON into frozen records: read, validated, merged.
#
# `weights_manifest.json` (shipped at the top of the package) lists per
# model, per tag (`"imagenet"`, ...), per file (`top`, `notop`) where to get
# a weights file and how to verify it. `active_manifest` is what a call
# sees: the shipped manifest, then `RESNET_KERAS_MANIFEST`, then `manifest=`.

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
