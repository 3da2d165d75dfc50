"""One bounded transfer: a URL's bytes into an open file, hashed on the way.

Every rule that protects the user's machine from a server lives here:
- redirects are followed by hand, each checked by the URL policy before it
  is requested, and never from https down to plain http (loopback
  included: a mirror must not reach services on the user's machine);
- `Accept-Encoding: identity` is asked and the raw bytes are stored, so a
  compressed body can never inflate on the user's disk;
- no more bytes are read than the limit allows (the manifest's size, else
  the size its parameter count implies, else Content-Length);
- a stall rule: a transfer whose progress stays below MIN_BYTES_PER_SECOND
  for a whole timeout period is dropped, so a server trickling one byte a
  second cannot hold a download (and every process waiting on its lock)
  forever.
Failures raise TransferError with a one-line reason and whether a retry
could help.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO

from .urls import check_redirect
from ..errors import ManifestError

CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 5
# The stall floor: a download averaging less than this over a whole timeout
# period is dropped (a healthy link is thousands of times faster).
MIN_BYTES_PER_SECOND = 1024


class TransferError(Exception):
    """A transfer failed: `str()` is the reason, one line."""

    def __init__(self, reason: str, *, retryable: bool, integrity: bool = False):
        super().__init__(reason)
        self.retryable = retryable
        self.integrity = integrity


@dataclass(frozen=True)
class Transferred:
    size: int
    digest: str
    content_type: str = ""


def _user_agent() -> str:
    from .. import __version__

    return f"resnet-keras/{__version__}"


def _progress(total: int | None, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, leave=True, dynamic_ncols=True,
    )


def transfer(
    url: str,
    out: BinaryIO,
    *,
    algorithm: str,
    limit: int,
    timeout: float,
    name: str,
    progressbar: bool,
) -> Transferred:
    """Copy `url` into `out` (at most `limit` bytes), returning size and hash."""
    if url.startswith("file:"):
        return _copy_local(url, out, algorithm=algorithm, limit=limit)
    return _get(url, out, algorithm=algorithm, limit=limit, timeout=timeout,
                name=name, progressbar=progressbar)


def _too_big(limit: int) -> TransferError:
    return TransferError(
        f"sent more than the {limit:,} bytes the manifest allows for this file "
        "(stopped reading there)",
        retryable=False, integrity=True,
    )


def _copy_local(url: str, out: BinaryIO, *, algorithm: str, limit: int) -> Transferred:
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    if not os.path.isfile(source):
        raise TransferError(f"no such file {source}", retryable=False)
    digest = hashlib.new(algorithm)
    size = 0
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            size += len(chunk)
            if size > limit:
                raise _too_big(limit)
            digest.update(chunk)
            out.write(chunk)
    return Transferred(size, digest.hexdigest())


def _open(session, url: str, timeout: float):
    """GET `url`, following allowed redirects by hand; the final response."""
    import requests

    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = session.get(
            current, stream=True, timeout=(timeout, timeout),
            allow_redirects=False, headers=headers,
        )
        if not response.is_redirect:
            return response
        target = urllib.parse.urljoin(current, response.headers.get("location", ""))
        response.close()
        try:
            check_redirect(current, target)
        except ManifestError as error:
            raise TransferError(str(error), retryable=False) from None
        current = target
    raise requests.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def _content_length(response) -> int | None:
    text = response.headers.get("Content-Length", "")
    return int(text) if text.isdigit() and len(text) < 20 else None


def _get(url, out, *, algorithm, limit, timeout, name, progressbar) -> Transferred:
    import requests
    import urllib3

    digest = hashlib.new(algorithm)
    size = 0
    with requests.Session() as session:
        response = _open(session, url, timeout)
        with response:
            response.raise_for_status()
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise TransferError(
                    f"sent Content-Encoding {encoding!r} although only the raw "
                    "file was asked for (Accept-Encoding: identity); refused, "
                    "so a compressed body cannot fill the disk",
                    retryable=False,
                )
            length = _content_length(response)
            if length is not None and length > limit:
                raise TransferError(
                    f"announced {length:,} bytes (Content-Length), more than the "
                    f"{limit:,} bytes the manifest allows for this file",
                    retryable=False, integrity=True,
                )
            window_start, window_bytes = time.monotonic(), 0
            with _progress(length, name, progressbar) as bar:
                try:
                    while True:
                        chunk = response.raw.read1(CHUNK_BYTES, decode_content=False)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > limit:
                            raise _too_big(limit)
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
                        window_bytes += len(chunk)
                        elapsed = time.monotonic() - window_start
                        if elapsed >= timeout:
                            if window_bytes < MIN_BYTES_PER_SECOND * elapsed:
                                raise TransferError(
                                    f"stalled: {window_bytes:,} bytes in {elapsed:.1f} s, "
                                    f"below the floor of {MIN_BYTES_PER_SECOND:,} bytes/s "
                                    f"for a whole timeout period ({timeout:g} s, "
                                    "RESNET_KERAS_TIMEOUT)",
                                    retryable=True,
                                )
                            window_start, window_bytes = time.monotonic(), 0
                except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as error:
                    raise TransferError(
                        f"no data for {timeout:g} s in the middle of the file, after "
                        f"{size:,} bytes (read timeout, RESNET_KERAS_TIMEOUT)",
                        retryable=True,
                    ) from error
                except (urllib3.exceptions.ProtocolError, ConnectionError) as error:
                    raise _truncated(size, length) from error
            if length is not None and size != length:
                raise _truncated(size, length)
            content_type = response.headers.get("Content-Type", "")
    return Transferred(size, digest.hexdigest(), content_type)


def _truncated(size: int, length: int | None) -> TransferError:
    expected = f" of {length:,}" if length is not None else ""
    return TransferError(
        f"the connection closed before the whole file arrived ({size:,}{expected} "
        "bytes; truncated)",
        retryable=True,
    )


def describe(error: BaseException, timeout: float) -> tuple[str, bool]:
    """(one-line reason, retryable) for a failed transfer."""
    import requests

    if isinstance(error, TransferError):
        return str(error), error.retryable
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        reason = error.response.reason or ""
        return f"HTTP {status} {reason}".strip(), status >= 500
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects (a redirect loop?)", False
    if isinstance(error, requests.ConnectTimeout):
        return f"cannot connect within {timeout:g} s (connect timeout)", True
    if isinstance(error, requests.Timeout):
        return f"connected, but no answer within {timeout:g} s (timeout)", True
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect ({first_line(error)})", True
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__}: {first_line(error)}", False
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device holding the cache", False
    if isinstance(error, OSError):
        return f"{error.strerror or error}", False
    return f"{type(error).__name__}: {first_line(error)}", False


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def announce(url: str, destination, enabled: bool) -> None:
    """Say what is fetched where before the first byte moves (keras does too)."""
    if enabled:
        print(f"Downloading {url} -> {destination}", file=sys.stderr, flush=True)

