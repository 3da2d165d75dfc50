"""Building the model a command asks for, with Keras imported only then.

`load_model` checks `--weights` (a tag of the manifest, or an existing
file) before Keras is imported, so a wrong argument is reported at once.
TensorFlow's native start-up lines are kept off the terminal unless
`--verbose`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from .options import active_manifest
from ..architecture.catalog import resolve
from ..architecture.specs import SPECS
from ..data_format import current, image_shape
from ..errors import UnknownWeightsError


@contextlib.contextmanager
def _native_stderr_to_devnull():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines
    (oneDNN, cudart, cuInit, written before absl reads TF_CPP_MIN_LOG_LEVEL)
    go there. Python's own `sys.stderr` is flushed before and after."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to keep clean
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _quiet_tensorflow(args: argparse.Namespace | None):
    """Around imports that may load TensorFlow: unless `--verbose`, its log
    level is 3 (fatal messages only; an explicit TF_CPP_MIN_LOG_LEVEL wins) and the
    lines it writes while loading go to /dev/null."""
    if "keras" in sys.modules or getattr(args, "verbose", False):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_to_devnull():
        yield


def _import_keras(args: argparse.Namespace):
    """Import Keras (and TensorFlow), quietly unless `--verbose`."""
    with _quiet_tensorflow(args):
        import keras
    return keras


def model_key(args: argparse.Namespace) -> str:
    return resolve(args.model)  # unknown names raise with close matches


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A model built for a command, and what its inputs need."""

    model: object  # keras.Model
    key: str
    weights: str  # for messages: a tag, a path or "none"
    preprocessing: str | None


def load_model(
    args: argparse.Namespace,
    *,
    include_top: bool,
    pooling: str | None = None,
    size: int | None = None,
) -> Loaded:
    """Build `args.model` with `args.weights` (a tag, a path or "none")."""
    from ..weights.resolve import classify

    key = model_key(args)
    spec = SPECS[key]
    offline = True if args.offline else None
    weights = args.weights
    if weights is None:
        manifest = active_manifest(args)
        if not manifest.tags(key):
            raise UnknownWeightsError(
                f"--weights needs a value for {key}: it has no pretrained weights in the "
                f"manifest. Received: --model={key}. Pass --weights PATH (an .h5 weights "
                "file) or --weights none (random initialization)."
            )
        weights = manifest.default_tag(key)
    elif weights.lower() == "none":
        weights = None
    source = classify(weights, key, include_top, manifest=args.manifest, offline=offline)
    entry = source.entry
    _import_keras(args)
    from ..architecture.registry import get_model

    kwargs = dict(include_top=include_top, weights=weights, manifest=args.manifest, offline=offline)
    if not include_top:
        # A fixed input size, so that images can be batched: the size the
        # weights were trained at unless --size says otherwise.
        side = size or (entry.input_size if entry and entry.input_size else spec.default_size)
        kwargs.update(pooling=pooling, input_shape=image_shape(side, current()))
    model = get_model(key, **kwargs)
    mode = (entry.preprocessing or spec.preprocessing) if entry else spec.preprocessing
    return Loaded(model, key, "none" if weights is None else str(weights), mode)
