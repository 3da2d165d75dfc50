"""The verified cache: where weights files live, how they get there.

A weights file reaches its final name in the cache only once its hash is
verified: `http.transfer` streams it (bounded, hashed on the way) into a
temp file of our own in the cache folder, the hash is checked, and
`os.replace` moves it into place in one atomic step. Readers therefore
never see a partial file, whether or not file locks work (NFS); the lock
(filelock) only saves a second process from fetching the same 100 MB again.

`open_verified` hands back an open file whose bytes were hashed: a cached
file is hashed through the descriptor that h5py then reads, and a download
through the temp file it was written to. Whatever replaces the path in the
meantime (another process writing the shared keras cache), what loads is
what was verified.

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
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from . import h5, hash_record, housekeeping, http, settings
from ..errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    OfflineError,
)
from .records import WeightsFile

# Extra tries of one URL after a 5xx answer, a dropped connection or a
# timeout; the wait between tries grows by RETRY_WAIT_SECONDS each time.
# Wrong bytes and 4xx answers are not retried: they would not change.
MAX_RETRIES = 2
RETRY_WAIT_SECONDS = 1.0


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return _digest(f, algorithm)


def _digest(file: BinaryIO, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    file.seek(0)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _open_if_verified(path: Path, wfile: WeightsFile) -> tuple[BinaryIO, str] | None:
    """(open file, its digest) if `path` is regular and has the declared size and hash.

    With a prefix hash, the full SHA-256 must also equal the record, if
    there is one; a malformed record fails the file.
    """
    if housekeeping.not_a_file(path) is not None:
        return None
    try:
        file = h5.open_regular(path)  # checks the descriptor: no FIFO, no swap
    except (OSError, ValueError):
        return None
    size = os.fstat(file.fileno()).st_size
    if wfile.size is None or size == wfile.size:
        digest = _digest(file, wfile.hash_algorithm)
        recorded = hash_record.read(path) if wfile.weak_hash else None
        if wfile.matches(digest) and recorded in (None, digest):
            file.seek(0)
            return file, digest
    file.close()
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one (and the recorded one)."""
    verified = _open_if_verified(path, wfile)
    if verified is None:
        return False
    verified[0].close()
    return True


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


def _record_full_hash(path: Path, wfile: WeightsFile, digest: str) -> None:
    """After a prefix-hash file is verified, record its full SHA-256 if none is recorded."""
    if wfile.weak_hash and hash_record.read(path) is None:
        hash_record.write(path, digest)


def cache_state(wfile: WeightsFile, folder: Path | None = None) -> str:
    """'cached' (verified), 'missing', 'corrupt' or 'not a file' for the CLI."""
    path = (folder or settings.cache_dir()) / wfile.file_name
    if housekeeping.not_a_file(path):
        return "not a file"
    if not path.exists():
        return "missing"
    return "cached" if is_verified(path, wfile) else "corrupt"


# --------------------------------------------------------------------------
# Transfers


class _Failure(Exception):
    def __init__(self, reason: str, *, integrity: bool = False):
        super().__init__(reason)
        self.integrity = integrity


# The one call that moves bytes (tests replace it to simulate faults).
_transfer = http.transfer


def _attempts(url: str, wfile: WeightsFile, temp: BinaryIO, progressbar: bool) -> http.Transferred:
    """Transfer with bounded retries; raise _Failure saying what went wrong and for how long."""
    timeout = settings.timeout_seconds()
    started = time.monotonic()
    for attempt in range(MAX_RETRIES + 1):
        temp.seek(0)
        temp.truncate()
        try:
            return _transfer(
                url, temp, algorithm=wfile.hash_algorithm, limit=wfile.max_bytes,
                timeout=timeout, name=wfile.file_name, progressbar=progressbar,
            )
        except (http.TransferError, OSError) as error:  # requests' errors are OSErrors
            reason, retryable = http.describe(error, timeout)
            integrity = getattr(error, "integrity", False)
            if not retryable or attempt == MAX_RETRIES:
                if attempt:
                    waited = time.monotonic() - started
                    reason += f" ({attempt + 1} tries, {waited:.0f} s in all)"
                raise _Failure(reason, integrity=integrity) from error
            time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def _download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool) -> BinaryIO:
    """Download `url` into a temp file, verify, move it to `path`; return it open, or raise _Failure.

    A prefix-hash file must also match its full-hash record, if one exists;
    if none does, the record is written before the file gets its name.
    """
    folder = path.parent
    try:
        temp_path, temp = housekeeping.open_temp(folder, wfile.file_name)
    except OSError as error:
        raise housekeeping.not_writable(folder, error) from error
    keep = False
    try:
        http.announce(url, path, progressbar)
        got = _attempts(url, wfile, temp, progressbar)
        if not wfile.matches(got.digest) or (wfile.size is not None and got.size != wfile.size):
            temp.seek(0)
            html = "html" in got.content_type.lower() or h5.looks_like_html(temp.read(512))
            what = (
                "an HTML page (an error or login page?), not the weights file"
                if html
                else "other bytes than the manifest declares"
            )
            raise _Failure(
                f"sent {what}: {got.size} bytes with {wfile.hash_algorithm} "
                f"{got.digest}, expected {wfile.hash_text}",
                integrity=True,
            )
        recorded = hash_record.read(path) if wfile.weak_hash else None
        if recorded is not None and recorded != got.digest:
            record = hash_record.path_of(path)
            raise _Failure(
                f"sent a file that passes the weaker {wfile.hash} check but whose "
                f"SHA-256 {got.digest} is not the one recorded in {record} at "
                f"the first verified download ({recorded}); if you trust the new "
                f"file, remove {record} and try again",
                integrity=True,
            )
        try:
            temp.flush()
            os.fsync(temp.fileno())  # durable before it gets the trusted name
            _record_full_hash(path, wfile, got.digest)
            os.replace(temp_path, path)
        except OSError as error:
            raise housekeeping.not_writable(folder, error) from error
        keep = True
        temp.seek(0)
        return temp  # the verified inode itself, now at `path`
    finally:
        if not keep:
            temp.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)


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
    """An open file holding the verified bytes of `wfile`, fetched if needed.

    Args:
        wfile: The manifest record of the file.
        offline: No network at all; None reads `RESNET_KERAS_OFFLINE`.
        progressbar: Say what is downloaded where and show a progress bar.
        force: Download again even if a verified copy is cached; the cached
            copy stays in place, usable, until the new one is verified.
        label: What the file is for (e.g. "resnet50 'imagenet' (top)"),
            used in error messages.
    """
    file = _obtain(wfile, offline=offline, progressbar=progressbar, force=force, label=label)
    with file:
        yield file


def _obtain(wfile: WeightsFile, *, offline, progressbar, force, label) -> BinaryIO:
    folder = settings.cache_dir()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    _check_not_blocked(path, f"not a weights file ({what})")
    if wfile.weak_hash:
        _check_not_blocked(hash_record.path_of(path), f"not the full-hash record of {what}")
    if not force:
        cached = _open_if_verified(path, wfile)
        if cached is not None:
            return _recorded_hit(path, wfile, *cached)
    corrupt = path.exists()  # and not verified (or force)
    failed = _failed_check(path, wfile) if corrupt else ""
    offline = settings.check_offline(offline)
    if offline:
        moved = False
        if corrupt and folder.is_dir():
            with contextlib.suppress(CacheError), housekeeping.locked(folder, wfile.file_name):
                moved = _set_aside_if_corrupt(path, wfile)
        state = f"is corrupt ({failed})" if corrupt else "is not in the cache"
        aside = f" (moved to {path.name}{housekeeping.CORRUPT_SUFFIX})" if moved else ""
        raise OfflineError(
            f"Offline mode is on and {what} {state}{aside} ({folder}). "
            f"Download {wfile.urls[0]} and put it at {path} (expected "
            f"{wfile.hash_text}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
            "offline=)."
        )
    why = f" The cached {wfile.file_name} is corrupt ({failed}) and must be replaced." if corrupt and not force else ""
    housekeeping.make_folder(folder)
    try:
        with housekeeping.locked(folder, wfile.file_name):
            housekeeping.remove_stale_temps(folder, wfile.file_name)
            housekeeping.remove_stale_temps(folder, hash_record.path_of(path).name)
            if not force:
                cached = _open_if_verified(path, wfile)
                if cached is not None:  # another process fetched it while we waited
                    return _recorded_hit(path, wfile, *cached)
            _set_aside_if_corrupt(path, wfile)
            failures: list[tuple[str, _Failure]] = []
            for url in wfile.urls:
                try:
                    return _download_verified(url, wfile, path, progressbar)
                except _Failure as failure:
                    failures.append((url, failure))
    except CacheError as error:
        if why and why not in str(error):
            raise CacheError(f"{error}{why}") from error
        raise
    raise _all_failed(wfile, path, what, failures, force)


def _check_not_blocked(path: Path, role: str) -> None:
    blocker = housekeeping.not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, {role}. Remove it and try again; "
            "resnet_keras never deletes what it did not write."
        )


def _recorded_hit(path: Path, wfile: WeightsFile, file: BinaryIO, digest: str) -> BinaryIO:
    """A verified cache hit; a prefix-hash file without a record gets one now.

    A read-only cache cannot take the record: the file still loads, checked
    against its prefix only (as at a first download).
    """
    with contextlib.suppress(OSError):
        _record_full_hash(path, wfile, digest)
    return file


def _all_failed(wfile, path: Path, what: str, failures, force: bool) -> Exception:
    integrity = any(f.integrity for _, f in failures)
    detail = "; ".join(f"{url}: {f}" for url, f in failures)
    kept = (
        f" The cached copy at {path} is unchanged."
        if force and path.exists()
        else " Nothing was saved."
    )
    if integrity:
        remedy = (
            "A server sent a file that does not match the manifest. "
            "If the file changed upstream, fix the hash in your manifest "
            "(and its size, if given: RESNET_KERAS_MANIFEST or manifest=); otherwise try "
            "another mirror."
        )
    else:
        remedy = (
            "Check the network, proxy or mirror URLs (RESNET_KERAS_MANIFEST "
            f"or manifest=), or download the file yourself and put it at {path}."
        )
    error_type = IntegrityError if integrity else DownloadError
    error = error_type(
        f"Could not get a verified {what} (expected {wfile.hash_text}) into "
        f"{path.parent}. Tried {len(failures)} URL(s): {detail}.{kept} {remedy}"
    )
    error.__cause__ = failures[-1][1]
    return error
