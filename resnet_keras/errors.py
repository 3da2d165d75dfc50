"""Typed errors raised by resnet_keras, and the words of their messages (`first_line`, `did_you_mean`).

Every error is also a built-in type (ValueError, OSError, ...) so that code
written against keras.applications, which catches those, keeps working.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class ResNetKerasError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(ResNetKerasError, ValueError):
    """A builder or function argument breaks a documented rule."""


class ManifestError(ResNetKerasError, ValueError):
    """The weights manifest is malformed or names something unknown."""


class UnknownWeightsError(ManifestError):
    """`weights=` names no tag of the model and no existing file."""


class IntegrityError(ResNetKerasError, OSError):
    """A weight file does not match the hash its manifest entry declares."""


class DownloadError(ResNetKerasError, OSError):
    """No URL of a manifest entry delivered a verified file."""


class OfflineError(ResNetKerasError, OSError):
    """Offline mode is on and the verified file is not in the cache."""


class WeightsFormatError(ResNetKerasError, ValueError):
    """A weights file is not a readable, safe Keras HDF5 weights file."""


class WeightsMismatchError(ResNetKerasError, ValueError):
    """A weights file does not fit the model (names, counts, shapes)."""


class CacheError(ResNetKerasError, OSError):
    """The cache folder cannot be created or written, or holds a non-file."""


class ImageError(ResNetKerasError, OSError):
    """An image file is missing, is not a file, or cannot be decoded."""


class MissingDependencyError(ResNetKerasError, ImportError):
    """A command needs an optional Python package that is not installed."""


class UnsupportedBackendError(ResNetKerasError, NotImplementedError):
    """The active Keras backend cannot do what was asked (e.g. gradients on numpy)."""


class ParityError(ResNetKerasError, RuntimeError):
    """A compiled or exported model computes something other than its Keras model."""


class ExportParityError(ParityError):
    """The exported artifact's outputs differ from the Keras model's beyond the tolerance."""


class PredictorParityError(ParityError):
    """A float32 Predictor engine's outputs differ from the Keras model's beyond the tolerance."""


class WorkerError(ResNetKerasError, RuntimeError):
    """A worker process of a data-parallel fine-tuning run failed, was killed, or lost its peers."""


# The words of a message, one rule each.


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of `error`'s message (its type name if empty), at most `limit` characters.

    A longer line loses its middle, not its end: the end often names the
    cause (a refused connection after a long URL).
    """
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    if len(line) <= limit:
        return line
    keep = (limit - 5) // 2
    return f"{line[:keep]} ... {line[-keep:]}"


def did_you_mean(name: object, choices: Iterable[str], n: int = 1) -> str:
    """" Did you mean 'x'?" (or "'x', 'y'") for the closest choices, else ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=n)
    if not close:
        return ""
    return f" Did you mean {', '.join(repr(c) for c in close)}?"
