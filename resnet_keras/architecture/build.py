"""The one build path behind every builder: every argument checked, `weights=` resolved, then the model.

    create_model(spec, **builder arguments)
        check the arguments -> resolve weights= once (`resolve`, below) -> _model
    build(resolved, ...)                      (the CLI and extraction start here)
        check name and pooling -> _model
    _model: check the rules that depend on the weights (classes, activation,
        input shape) -> open (and, for a tag, fetch and verify) the weights
        -> the graph (`graph.graph`) -> load

Three parts, in the order a call meets them: the build (here), every
argument rule of the builders and its message, and what `weights=` means
for a spec and where its file comes from (the meeting point of the
architecture and `weights/`, which never imports `architecture/`).

Nothing touches the network or the disk before every argument is checked.
Keras is imported when a graph is built, not when a builder module is
imported, so listing and describing models needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ..errors import InvalidArgumentError
from ..files import file_sha256
from ..weights.download import cache, snapshot
from ..weights.formats import registry
from ..weights.manifest import records
from ..weights.manifest.records import Manifest, WeightsEntry, WeightsFile
from .specs import (
    SHORTCUT_OPTIONS, SPECS, ResNetSpec, channel_axis, current_data_format, image_shape, layout, spatial_dims,
)


def create_model(
    spec: ResNetSpec,
    *,
    include_top: bool,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name: str,
    manifest=None,
    offline: bool | None = None,
    shortcut: str | None = None,
    adapt_input_channels: bool = False,
):
    """What every builder calls with its spec and its arguments."""
    check_flag("include_top", include_top)
    if shortcut is not None:  # CIFAR ResNets choose option A or B
        spec = dataclasses.replace(spec, shortcut=check_shortcut(shortcut))
    check_name(name)
    check_pooling(pooling)
    resolved = resolve(spec, weights, include_top=include_top, manifest=manifest, offline=offline)
    return _model(
        resolved,
        adapt_input_channels=adapt_input_channels,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


def build(
    resolved: Resolved,
    *,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int | None = None,
    classifier_activation="softmax",
    name: str | None = None,
    adapt_input_channels: bool = False,
):
    """The Keras model that `resolved` describes, with its weights loaded.

    `classes` and `name` default to the spec's (as its builder's defaults do).
    `adapt_input_channels`: load 3-channel weights into a stem of any
    number of input channels (`weights.formats.registry.adapt_stem_kernel`).
    """
    name = resolved.spec.name if name is None else name
    check_name(name)
    check_pooling(pooling)
    return _model(
        resolved,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=resolved.spec.classes if classes is None else classes,
        classifier_activation=classifier_activation,
        name=name,
        adapt_input_channels=adapt_input_channels,
    )


def _model(resolved: Resolved, *, input_tensor, input_shape, pooling, classes,
           classifier_activation, name, adapt_input_channels):
    """`build` once `name` and `pooling` are checked: the rules that need the weights, then the graph."""
    spec, include_top = resolved.spec, resolved.include_top
    check_adapt_input_channels(adapt_input_channels, has_weights=resolved.has_weights)
    check_classes(classes, include_top=include_top, pretrained_top=resolved.pretrained)
    if include_top:
        check_classifier_activation(
            classifier_activation, pretrained=resolved.has_weights
        )
    input_shape = input_shape_to_build(
        input_tensor,
        input_shape,
        default_size=resolved.input_size,
        min_size=spec.min_size,
        include_top=include_top,
        pretrained=resolved.pretrained,
        adapt_input_channels=adapt_input_channels,
    )
    with contextlib.ExitStack() as stack:
        # Read once (and, for a tag, fetched and hashed) before the slow build,
        # so a bad file fails fast; loaded from those same bytes after it.
        opened = stack.enter_context(open_weights(resolved)) if resolved.has_weights else None
        from . import graph  # imports Keras: only when a graph is built

        model = graph.graph(spec, input_tensor, input_shape, include_top, pooling,
                            classes, classifier_activation, name)
        if opened is not None:
            load_opened(model, resolved, *opened, adapt_input_channels=adapt_input_channels)
    return model


def build_pooled(resolved: Resolved, *, pooling: str | None, size: int | None = None):
    """The model without its top, globally pooled, at a fixed input size.

    A fixed size so that images can be batched: the size the weights were
    trained at unless `size` says otherwise. What the CLI's `features` and
    `export --pooling` and `resnet_keras.extraction` build.
    """
    shape = image_shape(size or resolved.input_size, current_data_format())
    return build(resolved, pooling=pooling, input_shape=shape)


# --------------------------------------------------------------------------
# Every argument rule of the builders and its message, in one place.
#
# The rules are keras.applications' (`obtain_input_shape`,
# `validate_activation`), plus checks where keras is silent or fails late.
# All of them run before any network or disk work.

POOLING_MODES = (None, "avg", "max")
PRETRAINED_ACTIVATIONS = (None, "softmax")


def _fail(rule: str, received: str, remedy: str = "") -> InvalidArgumentError:
    message = f"{rule} Received: {received}"
    if remedy:
        message += f". {remedy}"
    return InvalidArgumentError(message)


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `True` as a size is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(f"`{name}` must be True or False.", f"{name}={value!r}")


def check_pooling(pooling: Any) -> None:
    if pooling not in POOLING_MODES:
        raise _fail(
            "`pooling` must be None, 'avg' or 'max'.",
            f"pooling={pooling!r}",
        )


def check_classes(classes: Any, *, include_top: bool, pretrained_top: bool):
    if not _is_int(classes) or classes < 1:
        raise _fail(
            "`classes` must be a positive integer.", f"classes={classes!r}"
        )
    if include_top and pretrained_top and classes != 1000:
        raise _fail(
            "With pretrained weights and `include_top=True`, `classes` "
            "must be 1000 (the ImageNet head).",
            f"classes={classes!r}",
            "Use `include_top=False` and add your own head to train "
            "another number of classes.",
        )


def check_classifier_activation(activation: Any, *, pretrained: bool) -> None:
    import keras  # here, not at the top: the CLI checks weights without Keras

    try:
        resolved = keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise _fail(
            "`classifier_activation` must be None, a Keras activation name "
            "or a callable.",
            f"classifier_activation={activation!r}",
        ) from error
    allowed = {keras.activations.get(a) for a in PRETRAINED_ACTIVATIONS}
    if pretrained and resolved not in allowed:
        raise _fail(
            "With pretrained weights, `classifier_activation` must be None "
            "or 'softmax'.",
            f"classifier_activation={activation!r}",
            "Build with None and apply your activation to the logits.",
        )


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise _fail("`name` must be a non-empty string.", f"name={name!r}")


def normalize_input_shape(
    input_shape: Any,
    *,
    default_size: int,
    min_size: int,
    include_top: bool,
    pretrained: bool,
    data_format: str,
    adapt_input_channels: bool = False,
) -> tuple:
    """Check `input_shape` and return it as a tuple, filling the default.

    Mirrors keras' `obtain_input_shape`: a pretrained model with its top
    needs exactly the default shape; otherwise any spatial size of at least
    `min_size` (or None without the top) and, with pretrained weights,
    exactly 3 channels (any number with `adapt_input_channels`).
    """
    default = image_shape(default_size, data_format)
    if input_shape is None:
        if include_top:
            return default
        return image_shape(None, data_format)

    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise _fail(
            f"`input_shape` must be a tuple of 3 dimensions {layout(data_format)} "
            f"(image_data_format={data_format!r}).",
            f"input_shape={input_shape!r}",
        )
    shape = tuple(input_shape)
    channels = shape[channel_axis(data_format, batched=False)]
    spatial = spatial_dims(shape, data_format, batched=False)

    for dim in shape:
        if dim is not None and (not _is_int(dim) or dim < 1):
            raise _fail(
                "Every dimension of `input_shape` must be a positive integer "
                "or None.",
                f"input_shape={input_shape!r}",
            )
    if channels is None:
        raise _fail(
            "The channel dimension of `input_shape` must be known.",
            f"input_shape={input_shape!r} (image_data_format={data_format!r})",
        )
    if pretrained and channels != 3 and not adapt_input_channels:
        raise _fail(
            "With pretrained weights the input must have 3 channels.",
            f"input_shape={input_shape!r} (image_data_format={data_format!r})",
            "Pass adapt_input_channels=True to adapt the pretrained stem "
            "convolution to your channels, or use weights=None to train on "
            "other inputs.",
        )
    if adapt_input_channels:  # the channels are free, the size is not
        default = image_shape(default_size, data_format, channels)
    if include_top and pretrained and shape != default:
        raise _fail(
            "With pretrained weights and `include_top=True`, `input_shape` "
            f"must be {default}.",
            f"input_shape={input_shape!r}",
            "Use `include_top=False` for other input sizes.",
        )
    if any(d is not None and d < min_size for d in spatial):
        raise _fail(
            f"Input height and width must be at least {min_size}.",
            f"input_shape={input_shape!r}",
        )
    if include_top and None in spatial:
        raise _fail(
            "With `include_top=True`, `input_shape` must be fully static.",
            f"input_shape={input_shape!r}",
            "Give all dimensions or use `include_top=False`.",
        )
    return shape


def input_shape_to_build(
    input_tensor: Any,
    input_shape: Any,
    *,
    default_size: int,
    min_size: int,
    include_top: bool,
    pretrained: bool,
    adapt_input_channels: bool,
) -> tuple | None:
    """The checked shape of one image for the model's new Input (None: `input_tensor` is the input).

    `input_shape` follows `normalize_input_shape`; a given `input_tensor`
    must agree with it and meet the same size rules, with or without the
    head (keras lets a tensor of any valid size through).
    """
    rules = dict(
        default_size=default_size,
        min_size=min_size,
        pretrained=pretrained,
        data_format=current_data_format(),
        adapt_input_channels=adapt_input_channels,
    )
    if input_tensor is not None:
        normalize_input_shape(check_input_tensor(input_tensor, input_shape), include_top=False, **rules)
        return None
    return normalize_input_shape(input_shape, include_top=include_top, **rules)


def check_input_tensor(input_tensor: Any, input_shape: Any) -> tuple:
    """Check a user-supplied input tensor; return its per-sample shape."""
    import keras

    if not keras.backend.is_keras_tensor(input_tensor):
        raise _fail(
            "`input_tensor` must be a Keras tensor, e.g. from `keras.Input`.",
            f"input_tensor of type {type(input_tensor).__name__}",
            "Wrap arrays with `keras.Input(tensor=...)` or pass "
            "`input_shape` instead.",
        )
    if len(input_tensor.shape) != 4:
        raise _fail(
            "`input_tensor` must be a batch of images (rank 4).",
            f"input_tensor.shape={tuple(input_tensor.shape)}",
        )
    tensor_shape = tuple(input_tensor.shape[1:])
    if input_shape is not None:
        given = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if given is None or len(given) != 3 or any(
            a is not None and b is not None and a != b
            for a, b in zip(given, tensor_shape)
        ):
            raise _fail(
                "`input_shape` must agree with the shape of `input_tensor`.",
                f"input_shape={input_shape!r}, input_tensor.shape="
                f"{tuple(input_tensor.shape)}",
                "Pass only one of them.",
            )
    return tensor_shape


def check_adapt_input_channels(adapt: Any, *, has_weights: bool) -> None:
    check_flag("adapt_input_channels", adapt)
    if adapt and not has_weights:
        raise _fail(
            "`adapt_input_channels=True` adapts pretrained weights to the "
            "input's channels, so it needs `weights`.",
            "adapt_input_channels=True, weights=None",
            "Pass a weights tag or file, or leave adapt_input_channels out.",
        )


def check_shortcut(shortcut: Any) -> str:
    """The CIFAR ResNets' shortcut option of the paper (section 4.2)."""
    if shortcut not in SHORTCUT_OPTIONS:
        raise _fail(
            "`shortcut` must be 'A' (identity with zero-padded channels, no "
            "parameters) or 'B' (1x1 projection where the shape changes).",
            f"shortcut={shortcut!r}",
        )
    return shortcut


# --------------------------------------------------------------------------
# What `weights=` means for a spec, and where its file comes from.
#
# Two steps, so that every argument is checked before the network or the
# cache is touched:
#
# 1. `resolve` (pure: reads manifests and a local file's first bytes, writes
#    nothing, no network) turns a spec and `weights=` into a `Resolved`
#    record: no weights, a local file, or a manifest entry and the file of it
#    that `include_top` needs, with the input size and preprocessing that go
#    with them.
# 2. `open_weights` reads the file once into memory, fetching a manifest
#    file into the verified cache if needed (`cache.open_verified`): the
#    bytes that were hashed are the bytes every parser reads (the
#    shared-cache rule, weights/download/snapshot.py); a local file is read
#    the same way. `load_opened` hands them to the reader the format
#    registry chooses, with what it needs to know of the model.
#
# What a string means (one rule, keras' own for "imagenet"): a tag of the
# model wins, whatever the working directory holds; otherwise an existing
# file is a path (as in keras); and a string that names neither is reported
# as a missing file when it looks like a path (a `pathlib.Path`, a folder
# separator, or a weights-file suffix such as `.h5`), else as an unknown tag.
#
# This is where architecture meets weights: `weights/` never imports
# `architecture/`; what it needs (model names, a spec's layout) is passed in.

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
    return records.active_manifest(manifest, models=SPECS)


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
