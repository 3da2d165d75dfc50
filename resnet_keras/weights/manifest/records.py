"""The manifest's records: frozen, typed, validated by `parse.py` when read.

A `Manifest` maps model -> tag -> `WeightsEntry`; an entry holds the
`WeightsFile` of each head (`top`, `notop`) with its URLs, hash and limits.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Mapping

from .hashes import KINDS, HashKind
from ..._text import did_you_mean
from ...errors import ManifestError, UnknownWeightsError

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
