"""The verified cache: where weights files live, how they get there, and its settings.

The shared-cache rule (snapshot.py): what loads is bytes in our own memory,
read once within the manifest's byte limit and hashed there; no parser
reads the file on disk. keras' `get_file` rewrites files of this folder in
place and deletes them when a download fails; whatever it does, what loads
is what was verified.

A weights file reaches its final name in the cache only once its hash is
verified (`download.download_verified`: into memory, checked, then a temp
file and one `os.replace`). Readers therefore never see a partial file of
ours, whether or not file locks work (NFS); the lock only saves a second
process from fetching the same 100 MB again. The cache's files are listed
in housekeeping.py.

A cached file that fails its check is looked at again while it keeps
changing (keras may be rewriting it: we looked in the middle), for at most
a timeout period (`snapshot.wait_while_written`). Only a file that has
stopped changing is judged corrupt and set aside.

A file with a prefix hash is accepted when its SHA-256 starts with the
prefix and, once a record exists, equals the recorded full hash: the record
is written at the first verification (download or cache hit) and never
replaced while it is well formed.

The environment, read once per call: RESNET_KERAS_HOME (else
$KERAS_HOME/models, else ~/.keras/models), RESNET_KERAS_OFFLINE and
RESNET_KERAS_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from . import download, housekeeping, snapshot
from ..manifest.records import WeightsFile
from ...errors import CacheError, InvalidArgumentError, OfflineError

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


def check_offline(offline) -> bool:
    """`offline=` of the builders: None (read RESNET_KERAS_OFFLINE), True or False."""
    if offline is None:
        value = os.environ.get("RESNET_KERAS_OFFLINE", "").strip().lower()
        if value in _TRUE | _FALSE:
            return value in _TRUE
        raise InvalidArgumentError(
            "RESNET_KERAS_OFFLINE must be 1/true/yes/on or 0/false/no/off (or "
            f"unset). Received: RESNET_KERAS_OFFLINE={os.environ['RESNET_KERAS_OFFLINE']!r}"
        )
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


def _read_if_verified(path: Path, wfile: WeightsFile) -> tuple[bytes, str] | None:
    """(bytes, digest) of `path`, read once, if it is regular and has the declared size and hash.

    With a prefix hash, the full SHA-256 must also equal the record, if
    there is one; a malformed record fails the file.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or (wfile.size is not None and info.st_size != wfile.size):
            return None  # nothing there, not a file, or not worth reading
        data = snapshot.read_once(path, wfile.max_bytes)
    except (OSError, ValueError):  # missing, not regular, too large, changed while read
        return None
    if wfile.size is not None and len(data) != wfile.size:
        return None
    digest = hashlib.new(wfile.hash_algorithm, data).hexdigest()
    recorded = housekeeping.read_record(path) if wfile.weak_hash else None
    if wfile.matches(digest) and recorded in (None, digest):
        return data, digest
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one (and the recorded one)."""
    return _read_if_verified(path, wfile) is not None


def _look(path: Path, wfile: WeightsFile, wait: float) -> tuple[tuple[bytes, str] | None, str]:
    """(verified bytes and digest, or None; 'verified', 'missing', 'corrupt' or 'being written')."""
    verified = _read_if_verified(path, wfile)
    if verified is not None:
        return verified, "verified"
    if not os.path.lexists(path):
        return None, "missing"
    verified, changing = snapshot.wait_while_written(path, lambda p: _read_if_verified(p, wfile), wait=wait)
    if verified is not None:
        return verified, "verified"
    if changing:
        return None, "being written"
    return None, "corrupt" if os.path.lexists(path) else "missing"


def _failed_check(path: Path, wfile: WeightsFile) -> str:
    """Which check a cached file failed, for error messages (reads no weights)."""
    recorded = housekeeping.read_record(path) if wfile.weak_hash else None
    record = housekeeping.record_path(path).name
    if recorded == housekeeping.MALFORMED:
        return f"its full-hash record {record} is malformed"
    if recorded is not None:
        return (
            f"it fails its weaker {wfile.hash_kind} hash or the full SHA-256 "
            f"recorded in {record} at its first verification"
        )
    return f"it fails its {wfile.hash_kind} hash"


def cache_state(wfile: WeightsFile, folder: Path | None = None) -> str:
    """'cached' (verified), 'missing', 'corrupt' or 'not a file' for the CLI."""
    path = (folder or cache_dir()) / wfile.file_name
    if housekeeping.not_a_file(path):
        return "not a file"
    if not path.exists():
        return "missing"
    return "cached" if is_verified(path, wfile) else "corrupt"


def _set_aside_if_corrupt(path: Path, wfile: WeightsFile) -> bool:
    """Move a cached file that fails its hash to NAME.corrupt; True if moved.

    A malformed full-hash record cannot vouch for any file: it goes to
    NAME.sha256.corrupt. A well-formed one stays, to hold the next download.
    """
    if wfile.weak_hash and housekeeping.read_record(path) == housekeeping.MALFORMED:
        housekeeping.set_aside(housekeeping.record_path(path))
        corrupt = path.exists()  # whatever it holds, no record vouches for it
    else:
        corrupt = path.exists() and not is_verified(path, wfile)
    return corrupt and housekeeping.set_aside(path)  # read-only cache: left, the error names it


# --------------------------------------------------------------------------
# The entry points


def fetch(wfile: WeightsFile, **kwargs) -> Path:
    """Path of the verified local copy of `wfile`, downloading it if needed.

    Takes the arguments of `open_verified`.
    """
    with open_verified(wfile, **kwargs):
        return cache_dir() / wfile.file_name


@contextlib.contextmanager
def open_verified(
    wfile: WeightsFile,
    *,
    offline: bool | None = None,
    progressbar: bool = True,
    force: bool = False,
    label: str | None = None,
) -> Iterator[BinaryIO]:
    """A file object over the verified bytes of `wfile` (in memory), fetched if needed.

    Args:
        wfile: The manifest record of the file.
        offline: No network at all; None reads `RESNET_KERAS_OFFLINE`.
        progressbar: Say what is downloaded where and show a progress bar.
        force: Download again even if a verified copy is cached; the cached
            copy stays in place, usable, until the new one is verified.
        label: What the file is for (e.g. "resnet50 'imagenet' (top)"),
            used in error messages.
    """
    data = _obtain(wfile, offline=offline, progressbar=progressbar, force=force, label=label)
    with snapshot.as_file(data) as file:
        yield file


def _obtain(wfile: WeightsFile, *, offline, progressbar, force, label) -> bytes:
    folder, timeout = cache_dir(), timeout_seconds()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    _check_not_blocked(path, f"not a weights file ({what})")
    if wfile.weak_hash:
        _check_not_blocked(housekeeping.record_path(path), f"not the full-hash record of {what}")
    state = "not checked"  # force: the cached copy is not looked at
    if not force:
        verified, state = _look(path, wfile, timeout)
        if verified is not None:
            return _recorded_hit(path, wfile, *verified)
    failed = _failed_check(path, wfile) if state == "corrupt" else ""
    if check_offline(offline):
        raise _offline_error(wfile, path, what, state, failed, timeout)
    why = f" The cached {wfile.file_name} is corrupt ({failed}) and must be replaced." if failed else ""
    housekeeping.make_folder(folder)
    try:
        with housekeeping.locked(folder, wfile.file_name):
            housekeeping.remove_stale_temps(folder, wfile.file_name)
            if not force:
                verified = _read_if_verified(path, wfile)
                if verified is not None:  # another process fetched it while we waited
                    return _recorded_hit(path, wfile, *verified)
            if state != "being written":  # a file still being written is its writer's
                _set_aside_if_corrupt(path, wfile)
            failures: list[tuple[str, download.Failure]] = []
            for url in wfile.urls:
                try:
                    return download.download_verified(url, wfile, path, progressbar, timeout)
                except download.Failure as failure:
                    failures.append((url, failure))
    except CacheError as error:
        if why and why not in str(error):
            raise CacheError(f"{error}{why}") from error
        raise
    raise download.all_failed(wfile, path, what, failures, force)


def _offline_error(wfile, path: Path, what: str, state: str, failed: str, timeout: float) -> OfflineError:
    folder = path.parent
    moved = False
    if state == "corrupt" and folder.is_dir():
        with contextlib.suppress(CacheError), housekeeping.locked(folder, wfile.file_name):
            moved = _set_aside_if_corrupt(path, wfile)
    described = {
        "corrupt": f"is corrupt ({failed})",
        "being written": (
            "is being written by another program (it kept changing for "
            f"{timeout:g} s, RESNET_KERAS_TIMEOUT; keras rewrites "
            "its files in place): try again when it is done"
        ),
    }
    state_text = described.get(state, "is not in the cache")
    aside = f" (moved to {path.name}{housekeeping.CORRUPT_SUFFIX})" if moved else ""
    return OfflineError(
        f"Offline mode is on and {what} {state_text}{aside} ({folder}). "
        f"Download {wfile.urls[0]} and put it at {path} (expected "
        f"{wfile.hash_text}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
        "offline=)."
    )


def _check_not_blocked(path: Path, role: str) -> None:
    blocker = housekeeping.not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, {role}. Remove it and try again; "
            "resnet_keras never deletes what it did not write."
        )


def _recorded_hit(path: Path, wfile: WeightsFile, data: bytes, digest: str) -> bytes:
    """A verified cache hit; a prefix-hash file without a record gets one now.

    A read-only cache cannot take the record: the file still loads, checked
    against its prefix only (as at a first download).
    """
    if wfile.weak_hash:
        with contextlib.suppress(OSError):
            housekeeping.write_record_if_missing(path, digest)
    return data
