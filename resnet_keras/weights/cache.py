"""The verified cache: where weights files live, how they get there.

The shared-cache rule (snapshot.py): what loads is bytes in our own memory,
read once within the manifest's byte limit and hashed there; no parser
reads the file on disk. keras' `get_file` rewrites files of this folder in
place and deletes them when a download fails; whatever it does, what loads
is what was verified.

A weights file reaches its final name in the cache only once its hash is
verified: `http.transfer` streams it (bounded, hashed on the way) into
memory, the hash is checked, the bytes go to a temp file of our own in the
cache folder and `os.replace` moves it into place in one atomic step.
Readers therefore never see a partial file of ours, whether or not file
locks work (NFS); the lock (filelock) only saves a second process from
fetching the same 100 MB again.

A cached file that fails its check is looked at again while it keeps
changing (another program, keras, may be rewriting it: we looked in the
middle), for at most a timeout period (`snapshot.wait_while_written`).
Only a file that has stopped changing is judged corrupt and set aside; one
still being written is left to its writer, and a verified download takes
its name by `os.replace` (the writer keeps its own open file).

Cache layout, for a file `NAME` of the manifest:
    NAME                       the verified file (keras uses the same name)
    .NAME.<host>-<pid>-<rand>.part   a download in progress (removed when it
                               ends, or by a later run once its process is gone)
    .NAME.lock                 held while one process fetches NAME
    NAME.corrupt               a cached NAME that failed its hash, set aside
    NAME.sha256                the full SHA-256 of NAME, when the manifest
                               declares only a prefix (`sha256-prefix:`, the
                               weaker kind; hash_record.py)
    NAME.sha256.corrupt        a malformed record, set aside

A file with a prefix hash is accepted when its SHA-256 starts with the
prefix and, once a record exists, equals the recorded full hash: the record
is written at the first verification (download or cache hit) and never
replaced while it is well formed, so a later download (a mirror that
changed, a made-up file with the same 32-bit prefix) must match it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from . import download, hash_record, housekeeping, settings, snapshot
from ..errors import CacheError, OfflineError
from .records import WeightsFile


def _read_if_verified(path: Path, wfile: WeightsFile) -> tuple[bytes, str] | None:
    """(bytes, digest) of `path`, read once, if it is regular and has the declared size and hash.

    With a prefix hash, the full SHA-256 must also equal the record, if
    there is one; a malformed record fails the file.
    """
    if housekeeping.not_a_file(path) is not None:
        return None
    try:
        if wfile.size is not None and os.stat(path).st_size != wfile.size:
            return None  # not worth reading
        data = snapshot.read_once(path, wfile.max_bytes)
    except (OSError, ValueError):  # missing, not regular, too large, changed while read
        return None
    if wfile.size is not None and len(data) != wfile.size:
        return None
    digest = hashlib.new(wfile.hash_algorithm, data).hexdigest()
    recorded = hash_record.read(path) if wfile.weak_hash else None
    if wfile.matches(digest) and recorded in (None, digest):
        return data, digest
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one (and the recorded one)."""
    return _read_if_verified(path, wfile) is not None


def _look(path: Path, wfile: WeightsFile) -> tuple[tuple[bytes, str] | None, str]:
    """(verified bytes and digest, or None; 'verified', 'missing', 'corrupt' or 'being written').

    A file that fails its check is looked at again while it changes, up to
    a timeout period: keras may be rewriting it in place right now.
    """
    verified = _read_if_verified(path, wfile)
    if verified is not None:
        return verified, "verified"
    if not os.path.lexists(path):
        return None, "missing"
    verified, changing = snapshot.wait_while_written(
        path, lambda p: _read_if_verified(p, wfile), wait=settings.timeout_seconds()
    )
    if verified is not None:
        return verified, "verified"
    if changing:
        return None, "being written"
    return None, "corrupt" if os.path.lexists(path) else "missing"


def _failed_check(path: Path, wfile: WeightsFile) -> str:
    """Which check a cached file failed, for error messages (reads no weights)."""
    recorded = hash_record.read(path) if wfile.weak_hash else None
    record = hash_record.path_of(path).name
    if recorded == hash_record.MALFORMED:
        return f"its full-hash record {record} is malformed"
    if recorded is not None:
        return (
            f"it fails its weaker {wfile.hash_kind} hash or the full SHA-256 "
            f"recorded in {record} at its first verification"
        )
    return f"it fails its {wfile.hash_kind} hash"


def cache_state(wfile: WeightsFile, folder: Path | None = None) -> str:
    """'cached' (verified), 'missing', 'corrupt' or 'not a file' for the CLI."""
    path = (folder or settings.cache_dir()) / wfile.file_name
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
    if wfile.weak_hash and hash_record.read(path) == hash_record.MALFORMED:
        hash_record.set_aside(path)
        corrupt = path.exists()  # whatever it holds, no record vouches for it
    else:
        corrupt = path.exists() and not is_verified(path, wfile)
    if not corrupt:
        return False
    try:
        os.replace(path, path.with_name(path.name + housekeeping.CORRUPT_SUFFIX))
    except OSError:
        return False  # read-only cache: leave it, the error names it
    return True


# --------------------------------------------------------------------------
# The entry points


def fetch(wfile: WeightsFile, **kwargs) -> Path:
    """Path of the verified local copy of `wfile`, downloading it if needed.

    Takes the arguments of `open_verified`.
    """
    with open_verified(wfile, **kwargs):
        return settings.cache_dir() / wfile.file_name


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
    folder = settings.cache_dir()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    _check_not_blocked(path, f"not a weights file ({what})")
    if wfile.weak_hash:
        _check_not_blocked(hash_record.path_of(path), f"not the full-hash record of {what}")
    state = "not checked"  # force: the cached copy is not looked at
    if not force:
        verified, state = _look(path, wfile)
        if verified is not None:
            return _recorded_hit(path, wfile, *verified)
    failed = _failed_check(path, wfile) if state == "corrupt" else ""
    offline = settings.check_offline(offline)
    if offline:
        raise _offline_error(wfile, path, what, state, failed)
    why = f" The cached {wfile.file_name} is corrupt ({failed}) and must be replaced." if failed else ""
    housekeeping.make_folder(folder)
    try:
        with housekeeping.locked(folder, wfile.file_name):
            housekeeping.remove_stale_temps(folder, wfile.file_name)
            housekeeping.remove_stale_temps(folder, hash_record.path_of(path).name)
            if not force:
                verified = _read_if_verified(path, wfile)
                if verified is not None:  # another process fetched it while we waited
                    return _recorded_hit(path, wfile, *verified)
            if state != "being written":  # a file still being written is its writer's
                _set_aside_if_corrupt(path, wfile)
            failures: list[tuple[str, download.Failure]] = []
            for url in wfile.urls:
                try:
                    return download.download_verified(url, wfile, path, progressbar)
                except download.Failure as failure:
                    failures.append((url, failure))
    except CacheError as error:
        if why and why not in str(error):
            raise CacheError(f"{error}{why}") from error
        raise
    raise download.all_failed(wfile, path, what, failures, force)


def _offline_error(wfile: WeightsFile, path: Path, what: str, state: str, failed: str) -> OfflineError:
    folder = path.parent
    moved = False
    if state == "corrupt" and folder.is_dir():
        with contextlib.suppress(CacheError), housekeeping.locked(folder, wfile.file_name):
            moved = _set_aside_if_corrupt(path, wfile)
    described = {
        "corrupt": f"is corrupt ({failed})",
        "being written": (
            "is being written by another program (it kept changing for "
            f"{settings.timeout_seconds():g} s, RESNET_KERAS_TIMEOUT; keras rewrites "
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
            hash_record.write_if_missing(path, digest)
    return data
