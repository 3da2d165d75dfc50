"""Downloads: one URL's bytes into memory, verified, then stored under their name.

`_transfer` brings the bytes (bounded, hashed on the way) into a buffer of
our own: `http.transfer` for http(s), a bounded copy for a file:// mirror.
The hash (and a prefix hash's full-hash record) is checked on those bytes;
then they go to a temp file in the cache folder, fsync'd, and `os.replace`
gives them their name in one atomic step. The caller loads the same bytes
from memory (the shared-cache rule, snapshot.py): a program that rewrites
the cached file afterwards (keras) cannot change what loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from . import housekeeping, http
from .guard import TransferError
from ..formats.registry import looks_like_html
from ..manifest.records import WeightsFile
from ...errors import DownloadError, IntegrityError

# Extra tries of one URL after a 5xx answer, a dropped connection or a
# timeout; the wait between tries grows by RETRY_WAIT_SECONDS each time.
# Wrong bytes and 4xx answers are not retried: they would not change.
MAX_RETRIES = 2
RETRY_WAIT_SECONDS = 1.0
CHUNK_BYTES = 1 << 16


class Failure(Exception):
    """One URL did not deliver the verified file: `str()` is why, one line."""

    def __init__(self, reason: str, *, integrity: bool = False):
        super().__init__(reason)
        self.integrity = integrity


def _transfer(url: str, out: BinaryIO, **kwargs) -> http.Transferred:
    """The one call that moves bytes (tests replace it to simulate faults)."""
    if url.startswith("file:"):
        return _copy_local(url, out, algorithm=kwargs["algorithm"], limit=kwargs["limit"])
    return http.transfer(url, out, **kwargs)


def _copy_local(url: str, out: BinaryIO, *, algorithm: str, limit: int) -> http.Transferred:
    """A file:// mirror's file, copied within `limit` bytes and hashed on the way."""
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    if not os.path.isfile(source):
        raise TransferError(f"no such file {source}", retryable=False)
    digest = hashlib.new(algorithm)
    size = 0
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            size += len(chunk)
            if size > limit:
                raise http.too_big(limit)
            digest.update(chunk)
            out.write(chunk)
    return http.Transferred(size, digest.hexdigest())


def _attempts(url: str, wfile: WeightsFile, out: BinaryIO, progressbar: bool, timeout: float):
    """Transfer with bounded retries; raise Failure saying what went wrong and for how long."""
    started = time.monotonic()
    for attempt in range(MAX_RETRIES + 1):
        out.seek(0)
        out.truncate()
        try:
            return _transfer(
                url, out, algorithm=wfile.hash_algorithm, limit=wfile.max_bytes,
                timeout=timeout, name=wfile.file_name, progressbar=progressbar,
            )
        except (TransferError, OSError) as error:  # requests' errors are OSErrors
            reason, retryable = http.describe(error, timeout)
            integrity = getattr(error, "integrity", False)
            if not retryable or attempt == MAX_RETRIES:
                if attempt:
                    waited = time.monotonic() - started
                    reason += f" ({attempt + 1} tries, {waited:.0f} s in all)"
                raise Failure(reason, integrity=integrity) from error
            time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def _check(got: http.Transferred, data: bytes, wfile: WeightsFile, path: Path) -> None:
    """Raise Failure unless the bytes are the declared ones (and, for a prefix hash, the recorded ones)."""
    if not wfile.matches(got.digest) or (wfile.size is not None and got.size != wfile.size):
        html = "html" in got.content_type.lower() or looks_like_html(data[:512])
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
    recorded = housekeeping.read_record(path) if wfile.weak_hash else None
    if recorded is not None and recorded != got.digest:
        record = housekeeping.record_path(path)
        raise Failure(
            f"sent a file that passes the weaker {wfile.hash} check but whose "
            f"SHA-256 {got.digest} is not the one recorded in {record} at "
            f"the first verified download ({recorded}); if you trust the new "
            f"file, remove {record} and try again",
            integrity=True,
        )


def download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool, timeout: float) -> bytes:
    """Download `url` into memory, verify, store it at `path`; return the bytes, or raise Failure.

    The temp file is made first, so a cache that cannot be written fails
    before the network is used. A prefix-hash file without a full-hash
    record gets one before the file gets its name.
    """
    folder = path.parent
    try:
        temp_path, temp = housekeeping.open_temp(folder, wfile.file_name)
    except OSError as error:
        raise housekeeping.not_writable(folder, error) from error
    keep = False
    try:
        if progressbar:  # say what is fetched where before the first byte moves (keras does too)
            print(f"Downloading {url} -> {path}", file=sys.stderr, flush=True)
        received = io.BytesIO()  # ours alone: nothing else can change it
        got = _attempts(url, wfile, received, progressbar, timeout)
        data = received.getvalue()
        _check(got, data, wfile, path)
        try:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())  # durable before it gets the trusted name
            temp.close()
            if wfile.weak_hash:
                housekeeping.write_record_if_missing(path, got.digest)
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
