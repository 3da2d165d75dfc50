"""Where the cache is and how the network is used: the environment, read once per call.

RESNET_KERAS_HOME (else $KERAS_HOME/models, else ~/.keras/models),
RESNET_KERAS_OFFLINE and RESNET_KERAS_TIMEOUT.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CacheError, InvalidArgumentError

# Seconds to wait for a connection and between two bytes of an answer, on
# every request. `RESNET_KERAS_TIMEOUT` overrides it; tests set it low.
TIMEOUT_SECONDS = 30.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def cache_dir() -> Path:
    """Folder that holds weight files: keras' own cache by default.

    `RESNET_KERAS_HOME` if set, else `$KERAS_HOME/models`, else
    `~/.keras/models`, so files keras.applications downloaded are reused.
    The folder is never swapped for another one (keras falls back to
    /tmp/.keras when its cache is not writable; we raise CacheError).
    """
    if os.environ.get("RESNET_KERAS_HOME"):
        return _expand("RESNET_KERAS_HOME", os.environ["RESNET_KERAS_HOME"])
    if os.environ.get("KERAS_HOME"):
        return _expand("KERAS_HOME", os.environ["KERAS_HOME"]) / "models"
    return _expand("HOME", os.path.join("~", ".keras")) / "models"


def _expand(variable: str, value: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError as error:  # '~nosuchuser/c': no such home folder
        raise CacheError(
            f"{variable} must name a folder, and {value!r} starts with a home "
            f"folder that cannot be found ({error}). Received: {variable}="
            f"{value!r}. Use an absolute path or an existing user's ~."
        ) from None


def offline_from_env() -> bool:
    value = os.environ.get("RESNET_KERAS_OFFLINE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(
        "RESNET_KERAS_OFFLINE must be 1/true/yes/on or 0/false/no/off (or "
        f"unset). Received: RESNET_KERAS_OFFLINE={os.environ['RESNET_KERAS_OFFLINE']!r}"
    )


def check_offline(offline) -> bool:
    """`offline=` of the builders: None (use the environment), True or False."""
    if offline is None:
        return offline_from_env()
    if not isinstance(offline, bool):
        raise InvalidArgumentError(
            f"`offline` must be None, True or False. Received: offline={offline!r}"
        )
    return offline


def timeout_seconds() -> float:
    text = os.environ.get("RESNET_KERAS_TIMEOUT", "").strip()
    if not text:
        return float(TIMEOUT_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidArgumentError(
            "RESNET_KERAS_TIMEOUT must be a positive number of seconds. "
            f"Received: RESNET_KERAS_TIMEOUT={text!r}"
        )
    return value
