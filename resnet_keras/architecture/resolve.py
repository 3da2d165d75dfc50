"""What `weights=` means for a spec, and where its file comes from.

Two steps, so that every argument is checked before the network or the
cache is touched:

1. `resolve` (pure: reads manifests and a local file's first bytes, writes
   nothing, no network) turns a spec and `weights=` into a `Resolved`
   record: no weights, a local file, or a manifest entry and the file of it
   that `include_top` needs, with the input size and preprocessing that go
   with them.
2. `open_weights` reads the file once into memory, fetching a manifest
   file into the verified cache if needed (`cache.open_verified`): the
   bytes that were hashed are the bytes every parser reads (the
   shared-cache rule, weights/download/snapshot.py); a local file is read
   the same way. `load_opened` hands them to the reader the format
   registry chooses, with what it needs to know of the model.

What a string means (one rule, keras' own for "imagenet"): a tag of the
model wins, whatever the working directory holds; otherwise an existing
file is a path (as in keras); and a string that names neither is reported
as a missing file when it looks like a path (a `pathlib.Path`, a folder
separator, or a weights-file suffix such as `.h5`), else as an unknown tag.

This is where architecture meets weights: `weights/` never imports
`architecture/`; what it needs (model names, a spec's layout) is passed in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .specs import SPECS, ResNetSpec
from ..errors import InvalidArgumentError
from ..files import file_sha256
from ..weights.download import cache, snapshot
from ..weights.formats import registry
from ..weights.manifest import parse
from ..weights.manifest.records import Manifest, WeightsEntry, WeightsFile

# The models a torch checkpoint fits (named when one meets another model).
TORCH_MODELS = tuple(name for name, spec in SPECS.items() if spec.torch_layout)


class _DefaultTag:
    def __repr__(self) -> str:
        return "DEFAULT_TAG"


# `weights=DEFAULT_TAG`: the tag the manifest marks as the model's default
# (the CLI's --weights left out); an error names the choices if it has none.
DEFAULT_TAG = _DefaultTag()


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a model loads and how it is fed, decided once.

    The one meeting point of a spec, the `weights=` argument and the
    manifest: the builders, the registry and the CLI read this record
    instead of re-deriving the default tag, input size or preprocessing.
    Weights are exactly one of: none, `path` (a local file), or `entry` +
    `file` (a manifest tag; `file` is the one `include_top` needs).
    """

    spec: ResNetSpec
    include_top: bool
    offline: bool
    path: Path | None = None
    entry: WeightsEntry | None = None
    file: WeightsFile | None = None

    def weights_hash(self) -> str:
        """The hash of the weights file the model loads ("none" for random weights).

        A manifest tag carries its file's hash (checked when it is loaded); a
        local file is hashed here, so a rerun with another file of the same
        name is told apart.
        """
        if self.file is not None:
            return self.file.hash
        if self.path is None:
            return "none"
        return f"sha256:{file_sha256(self.path)}"

    @property
    def pretrained(self) -> bool:
        """Manifest weights, which follow keras' rules for "imagenet"."""
        return self.entry is not None

    @property
    def has_weights(self) -> bool:
        return self.entry is not None or self.path is not None

    @property
    def tag(self) -> str | None:
        return self.entry.tag if self.entry else None

    @property
    def input_size(self) -> int:
        """The size the weights were trained at (the spec's default without a tag)."""
        return (self.entry and self.entry.input_size) or self.spec.default_size

    @property
    def preprocessing(self) -> str | None:
        return (self.entry and self.entry.preprocessing) or self.spec.preprocessing

    @property
    def resize_size(self) -> int | None:
        """The shorter side before the center `input_size` crop of the weights' eval transform, if any."""
        return self.entry.resize_size if self.entry else None

    @property
    def weights_label(self) -> str:
        """The weights as a user would name them: a tag, a path, or 'none'."""
        return self.tag or (str(self.path) if self.path else "none")

    @property
    def label(self) -> str:
        kind = "top" if self.include_top else "notop"
        name = self.spec.name
        return f"{name} weights {self.tag!r} ({kind})" if self.entry else name


def active_manifest(manifest: Any = None) -> Manifest:
    """Shipped manifest, then `RESNET_KERAS_MANIFEST` paths, then `manifest=`; keys are models of SPECS."""
    return parse.active_manifest(manifest, models=SPECS)


def check_weights_argument(weights: Any) -> None:
    """Type check only; which strings are valid is the manifest's business."""
    if weights is not None and weights is not DEFAULT_TAG and not isinstance(weights, (str, os.PathLike)):
        raise InvalidArgumentError(
            "`weights` must be None, a weights tag such as 'imagenet', or "
            f"the path to a weights file. Received: weights={weights!r}"
        )


def resolve(
    spec: ResNetSpec,
    weights: Any,
    *,
    include_top: bool,
    manifest: Any = None,
    offline: bool | None = None,
) -> Resolved:
    """Decide what `weights=` means for `spec`, without network or writes.

    Checks `weights=`, `manifest=` and `offline=`; reads manifests and at
    most a local file's first bytes.
    """
    check_weights_argument(weights)
    offline = cache.check_offline(offline)
    model = spec.name
    base = dict(spec=spec, include_top=include_top, offline=offline)
    if weights is None:
        return Resolved(**base)
    catalog = active_manifest(manifest)
    if weights is DEFAULT_TAG:
        weights = catalog.default_tag(model)
    text = os.fspath(weights)
    if isinstance(weights, str) and catalog.is_tag(model, text):
        entry = catalog.entry(model, text)  # a tag wins over a file of that name
        return Resolved(entry=entry, file=entry.file(include_top), **base)
    path = _expand_path(text)
    if path.exists() or os.path.lexists(path):
        return Resolved(path=registry.check_local_file(path, weights), **base)
    if (
        isinstance(weights, os.PathLike)
        or os.sep in text
        or (os.altsep and os.altsep in text)
        or text.lower().endswith(registry.PATH_SUFFIXES)
    ):
        tags = ", ".join(catalog.tags(model)) or "none"
        raise registry.missing_file_error(
            path,
            f" `weights` must be None, a weights tag of {model} ({tags}) or "
            f"an existing file. Received: weights={weights!r}.",
        )
    catalog.entry(model, text)  # raises UnknownWeightsError with suggestions
    raise AssertionError("unreachable: entry() raises for unknown tags")


def _expand_path(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # '~nosuchuser/w.h5': keep it literal, then "not found"
        return Path(text)


@contextlib.contextmanager
def open_weights(resolved: Resolved, *, progressbar: bool = True) -> Iterator[tuple[BinaryIO, Any]]:
    """(file object over the bytes read once, name for messages) of the weights of `resolved`.

    Tagged weights are verified bytes of the cache; a local file is read
    once, within `snapshot.MAX_LOCAL_BYTES`.
    """
    if resolved.file is None:
        yield snapshot.as_file(snapshot.read_once(resolved.path, snapshot.MAX_LOCAL_BYTES)), resolved.path
        return
    with cache.open_verified(
        resolved.file, offline=resolved.offline, progressbar=progressbar, label=resolved.label
    ) as file:
        yield file, cache.cache_dir() / resolved.file.file_name


def load_file(model, spec: ResNetSpec, file: BinaryIO, where, *, adapt_input_channels: bool = False) -> None:
    """Load an open weights file (HDF5, torch .pth/.pt or .safetensors) into `model`, built from `spec`."""
    registry.load(
        model, file, where, spec=spec, torch_models=TORCH_MODELS, adapt_input_channels=adapt_input_channels
    )


def load_opened(model, resolved: Resolved, file: BinaryIO, where, *, adapt_input_channels=False) -> None:
    """Load the file `open_weights` gave into `model`."""
    load_file(model, resolved.spec, file, where, adapt_input_channels=adapt_input_channels)
