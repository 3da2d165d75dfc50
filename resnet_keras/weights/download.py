"""Downloads: one URL's bytes into memory, verified, then stored under their name.

`http.transfer` streams the bytes (bounded, hashed on the way) into a
buffer of our own; the hash (and a prefix hash's full-hash record) is
checked on those bytes; then they go to a temp file in the cache folder,
fsync'd, and `os.replace` gives them their name in one atomic step. The
caller loads the same bytes from memory (the shared-cache rule, snapshot.py):
a program that rewrites the cached file afterwards (keras) cannot change
what loads.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path
from typing import BinaryIO

from . import h5, hash_record, housekeeping, http, settings
from ..errors import DownloadError, IntegrityError
from .records import WeightsFile

# Extra tries of one URL after a 5xx answer, a dropped connection or a
# timeout; the wait between tries grows by RETRY_WAIT_SECONDS each time.
# Wrong bytes and 4xx answers are not retried: they would not change.
MAX_RETRIES = 2
RETRY_WAIT_SECONDS = 1.0


class Failure(Exception):
    """One URL did not deliver the verified file: `str()` is why, one line."""

    def __init__(self, reason: str, *, integrity: bool = False):
        super().__init__(reason)
        self.integrity = integrity


# The one call that moves bytes (tests replace it to simulate faults).
_transfer = http.transfer


def _attempts(url: str, wfile: WeightsFile, out: BinaryIO, progressbar: bool) -> http.Transferred:
    """Transfer with bounded retries; raise Failure saying what went wrong and for how long."""
    timeout = settings.timeout_seconds()
    started = time.monotonic()
    for attempt in range(MAX_RETRIES + 1):
        out.seek(0)
        out.truncate()
        try:
            return _transfer(
                url, out, algorithm=wfile.hash_algorithm, limit=wfile.max_bytes,
                timeout=timeout, name=wfile.file_name, progressbar=progressbar,
            )
        except (http.TransferError, OSError) as error:  # requests' errors are OSErrors
            reason, retryable = http.describe(error, timeout)
            integrity = getattr(error, "integrity", False)
            if not retryable or attempt == MAX_RETRIES:
                if attempt:
                    waited = time.monotonic() - started
                    reason += f" ({attempt + 1} tries, {waited:.0f} s in all)"
                raise Failure(reason, integrity=integrity) from error
            time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool) -> bytes:
    """Download `url` into memory, verify, store it at `path`; return the bytes, or raise Failure.

    The temp file is made first, so a cache that cannot be written fails
    before the network is used. A prefix-hash file must also match its
    full-hash record, if one exists; if none does, the record is written
    before the file gets its name.
    """
    folder = path.parent
    try:
        temp_path, temp = housekeeping.open_temp(folder, wfile.file_name)
    except OSError as error:
        raise housekeeping.not_writable(folder, error) from error
    keep = False
    try:
        http.announce(url, path, progressbar)
        received = io.BytesIO()  # ours alone: nothing else can change it
        got = _attempts(url, wfile, received, progressbar)
        data = received.getvalue()
        if not wfile.matches(got.digest) or (wfile.size is not None and got.size != wfile.size):
            html = "html" in got.content_type.lower() or h5.looks_like_html(data[:512])
            what = (
                "an HTML page (an error or login page?), not the weights file"
                if html
                else "other bytes than the manifest declares"
            )
            raise Failure(
                f"sent {what}: {got.size} bytes with {wfile.hash_algorithm} "
                f"{got.digest}, expected {wfile.hash_text}",
                integrity=True,
            )
        recorded = hash_record.read(path) if wfile.weak_hash else None
        if recorded is not None and recorded != got.digest:
            record = hash_record.path_of(path)
            raise Failure(
                f"sent a file that passes the weaker {wfile.hash} check but whose "
                f"SHA-256 {got.digest} is not the one recorded in {record} at "
                f"the first verified download ({recorded}); if you trust the new "
                f"file, remove {record} and try again",
                integrity=True,
            )
        try:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())  # durable before it gets the trusted name
            temp.close()
            if wfile.weak_hash:
                hash_record.write_if_missing(path, got.digest)
            os.replace(temp_path, path)
        except OSError as error:
            raise housekeeping.not_writable(folder, error) from error
        keep = True
        return data
    finally:
        temp.close()
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)




def all_failed(wfile: WeightsFile, path: Path, what: str, failures, force: bool) -> Exception:
    """The error when every URL failed: each URL with its reason, and what to do."""
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
