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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from . import h5, housekeeping, http, settings
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


def _open_if_verified(path: Path, wfile: WeightsFile) -> BinaryIO | None:
    """The open file at `path` if it is regular and has the declared size and hash."""
    if housekeeping.not_a_file(path) is not None:
        return None
    try:
        file = h5.open_regular(path)  # checks the descriptor: no FIFO, no swap
    except (OSError, ValueError):
        return None
    size = os.fstat(file.fileno()).st_size
    if (wfile.size is None or size == wfile.size) and _digest(file, wfile.hash_algorithm) == wfile.hash_hex:
        file.seek(0)
        return file
    file.close()
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one."""
    file = _open_if_verified(path, wfile)
    if file is None:
        return False
    file.close()
    return True


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
    """Download `url` into a temp file, verify, move it to `path`; return it open, or raise _Failure."""
    folder = path.parent
    try:
        temp_path, temp = housekeeping.open_temp(folder, wfile.file_name)
    except OSError as error:
        raise housekeeping.not_writable(folder, error) from error
    keep = False
    try:
        http.announce(url, path, progressbar)
        got = _attempts(url, wfile, temp, progressbar)
        if got.digest != wfile.hash_hex or (wfile.size is not None and got.size != wfile.size):
            temp.seek(0)
            html = "html" in got.content_type.lower() or h5.looks_like_html(temp.read(512))
            what = (
                "an HTML page (an error or login page?), not the weights file"
                if html
                else "other bytes than the manifest declares"
            )
            raise _Failure(
                f"sent {what}: {got.size} bytes with {wfile.hash_algorithm} "
                f"{got.digest}, expected {wfile.hash}",
                integrity=True,
            )
        try:
            temp.flush()
            os.fsync(temp.fileno())  # durable before it gets the trusted name
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
    """Move a cached file that fails its hash to NAME.corrupt; True if moved."""
    if not path.exists() or is_verified(path, wfile):
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
    blocker = housekeeping.not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, not a weights file ({what}). Remove it and "
            "try again; resnet_keras never deletes what it did not write."
        )
    if not force:
        cached = _open_if_verified(path, wfile)
        if cached is not None:
            return cached  # also in a read-only cache: no write, no lock
    corrupt = path.exists()  # and not verified (or force)
    offline = settings.check_offline(offline)
    if offline:
        moved = False
        if corrupt and folder.is_dir():
            with contextlib.suppress(CacheError), housekeeping.locked(folder, wfile.file_name):
                moved = _set_aside_if_corrupt(path, wfile)
        state = "is corrupt (it fails its hash)" if corrupt else "is not in the cache"
        aside = f" (moved to {path.name}{housekeeping.CORRUPT_SUFFIX})" if moved else ""
        raise OfflineError(
            f"Offline mode is on and {what} {state}{aside} ({folder}). "
            f"Download {wfile.urls[0]} and put it at {path} (expected "
            f"{wfile.hash}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
            "offline=)."
        )
    why = (
        f" The cached {wfile.file_name} is corrupt (it fails its {wfile.hash_algorithm} "
        "hash) and must be replaced."
        if corrupt and not force
        else ""
    )
    housekeeping.make_folder(folder)
    try:
        with housekeeping.locked(folder, wfile.file_name):
            housekeeping.remove_stale_temps(folder, wfile.file_name)
            if not force:
                cached = _open_if_verified(path, wfile)
                if cached is not None:
                    return cached  # another process fetched it while we waited
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
        f"Could not get a verified {what} (expected {wfile.hash}) into "
        f"{path.parent}. Tried {len(failures)} URL(s): {detail}.{kept} {remedy}"
    )
    error.__cause__ = failures[-1][1]
    return error
