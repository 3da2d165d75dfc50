"""What `weights=` means, and where its file comes from.

Two steps, so that every argument is checked before the network or the
cache is touched:

1. `classify` (pure: reads manifests and a local file's first bytes, writes
   nothing, no network) turns `weights=` into a `WeightsSource`: nothing, a
   local file, or a manifest entry and the file of it that `include_top`
   needs.
2. `open_weights` opens the file, fetching a manifest file into the
   verified cache if needed (`cache.open_verified`): the bytes that
   were hashed are the bytes h5py reads.

`resolve_weights` does both and gives the path.

What a string means (one rule, keras' own for "imagenet"): a tag of the
model wins, whatever the working directory holds; otherwise an existing
file is a path (as in keras); and a string that names neither is reported
as a missing file when it looks like a path (a `pathlib.Path`, a folder
separator, or a weights-file suffix such as `.h5`), else as an unknown tag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from . import cache, h5
from .manifest import merge, read_manifest, shipped_manifest
from .records import Manifest, WeightsEntry, WeightsFile
from ..architecture.validation import check_weights_argument
from ..errors import InvalidArgumentError, ManifestError, WeightsFormatError

# Strings that are meant as paths even when the file is missing.
_PATH_SUFFIXES = (".h5", ".hdf5", ".keras", ".pkl", ".pt", ".pth", ".npz")
# Formats that are refused by name before a byte is read: pickle-based ones
# can run code when loaded, and a whole saved model can carry code (Lambda).
_REFUSED_SUFFIXES = {
    ".pkl": "a pickle",
    ".pickle": "a pickle",
    ".joblib": "a pickle",
    ".pt": "a PyTorch pickle",
    ".pth": "a PyTorch pickle",
    ".bin": "a PyTorch pickle",
    ".ckpt": "a checkpoint",
    ".npz": "a NumPy archive",
    ".npy": "a NumPy array file",
    ".safetensors": "a safetensors file",
    ".keras": "a whole saved Keras model (it may carry code, e.g. a Lambda layer)",
    ".pb": "a TensorFlow graph",
    ".onnx": "an ONNX model",
}


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """`weights=` after classification.

    Exactly one of: nothing (`weights=None`), `path` (a local file), or
    `entry` + `file` (a manifest tag; `file` is the one `include_top` needs).
    """

    model: str
    include_top: bool
    offline: bool
    path: Path | None = None
    entry: WeightsEntry | None = None
    file: WeightsFile | None = None

    @property
    def tagged(self) -> bool:
        """True for manifest weights (which follow keras' imagenet rules)."""
        return self.entry is not None

    @property
    def label(self) -> str:
        kind = "top" if self.include_top else "notop"
        return f"{self.model} weights {self.entry.tag!r} ({kind})" if self.entry else self.model


def active_manifest(manifest: Any = None) -> Manifest:
    """Shipped manifest, then `RESNET_KERAS_MANIFEST` paths, then `manifest=`.

    `RESNET_KERAS_MANIFEST` holds one path or several separated by
    `os.pathsep` (':' on Linux and macOS, ';' on Windows); later ones win.
    """
    result = shipped_manifest()
    env = os.environ.get("RESNET_KERAS_MANIFEST", "")
    for entry in filter(None, env.split(os.pathsep)):
        result = merge(result, read_manifest(entry), source=entry)
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
        result = merge(result, manifest, source=source)
    _check_model_keys(result)
    return result


def _check_model_keys(manifest: Manifest) -> None:
    """A user manifest's model keys must name models of the zoo (exact case)."""
    from ..architecture.specs import SPECS

    for model in manifest.models():
        if model not in SPECS:
            close = difflib.get_close_matches(model.lower(), list(SPECS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ManifestError(
                f"The weights manifest has an entry for model {model!r}, which is "
                f"not a model of resnet_keras (keys are lower case registry names "
                f"such as 'resnet50').{hint} Received: model key {model!r}. Fix "
                "the key in your manifest (RESNET_KERAS_MANIFEST or manifest=)."
            )


def _check_local_file(path: Path, weights: Any) -> Path:
    refused = _REFUSED_SUFFIXES.get(path.suffix.lower())
    if refused and not path.is_dir():
        raise WeightsFormatError(
            f"{path} is {refused}; resnet_keras loads only HDF5 weights files "
            "(.h5, Keras 2 `save_weights` layout) and never unpickles or runs "
            "code from a file. Received: "
            f"weights={os.fspath(weights)!r}. Convert the weights to such a "
            ".h5 file with code you trust."
        )
    h5.check_signature(path)
    return path


def classify(
    weights: Any,
    model: str,
    include_top: bool,
    *,
    manifest: Any = None,
    offline: bool | None = None,
) -> WeightsSource:
    """Check `weights=` (and `manifest=`, `offline=`) without network or writes."""
    check_weights_argument(weights)
    offline = cache.check_offline(offline)
    base = dict(model=model, include_top=include_top, offline=offline)
    if weights is None:
        return WeightsSource(**base)
    text = os.fspath(weights)
    catalog = active_manifest(manifest)
    if isinstance(weights, str) and catalog.is_tag(model, text):
        entry = catalog.entry(model, text)  # a tag wins over a file of that name
        return WeightsSource(entry=entry, file=entry.file(include_top), **base)
    path = _expand_path(text)
    if path.exists() or os.path.lexists(path):
        return WeightsSource(path=_check_local_file(path, weights), **base)
    if (
        isinstance(weights, os.PathLike)
        or os.sep in text
        or (os.altsep and os.altsep in text)
        or text.lower().endswith(_PATH_SUFFIXES)
    ):
        tags = ", ".join(catalog.tags(model)) or "none"
        raise h5.missing_file_error(
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
def open_weights(source: WeightsSource, *, progressbar: bool = True) -> Iterator[tuple[BinaryIO, Any]]:
    """(open file, name for messages) of the weights of `source`, verified if tagged."""
    if source.file is None:
        with h5.open_regular(source.path) as file:
            yield file, source.path
        return
    with cache.open_verified(
        source.file, offline=source.offline, progressbar=progressbar, label=source.label
    ) as file:
        yield file, cache.cache_dir() / source.file.file_name


def materialize(source: WeightsSource, *, progressbar: bool = True) -> Path | None:
    """Local path of the weights of `source`, fetched and verified if needed."""
    if source.file is None:
        return source.path
    return cache.fetch(
        source.file, offline=source.offline, progressbar=progressbar, label=source.label
    )


def resolve_weights(
    weights: Any,
    model: str,
    include_top: bool,
    *,
    manifest: Any = None,
    offline: bool | None = None,
) -> Path | None:
    """`weights=` -> path of a verified local file, or None for no weights."""
    source = classify(weights, model, include_top, manifest=manifest, offline=offline)
    return materialize(source)
