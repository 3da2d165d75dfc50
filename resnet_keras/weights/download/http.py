"""One bounded HTTP(S) transfer: a URL's bytes into a file object (our memory), hashed on the way.

Every rule that protects the user's machine from a server lives here:
- redirects are followed by hand, each checked by the URL policy before it
  is requested, and never from https down to plain http (loopback
  included: a mirror must not reach services on the user's machine);
- `Accept-Encoding: identity` is asked and the raw bytes are stored, so a
  compressed body can never inflate on the user's disk;
- no more bytes are read than the limit allows (the manifest's size, else
  the size its parameter count implies, else Content-Length);
- every phase of a request (connect, TLS handshake, status line and
  headers, any 100 Continue, every redirect, the body, a chunked trailer)
  is read by one bounded reader, `guard.Guard`: a timeout per phase, one
  deadline for everything before the body, and the stall rule for the body
  (below guard.MIN_BYTES_PER_SECOND for a whole timeout period: dropped), so no
  server can hold a download (and every process waiting on its lock)
  forever.
Failures raise TransferError with a one-line reason (which keeps what names
the cause, a TLS failure for one, whatever the URL's length) and whether a
retry could help.
"""

from __future__ import annotations

import errno
import hashlib
import ssl
import sys
import urllib.parse
from typing import BinaryIO, NamedTuple

from . import guard as _guard
from .guard import TransferError
from ..manifest.urls import check_redirect
from ..._text import first_line
from ...errors import ManifestError

CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 5


class Transferred(NamedTuple):
    """What a transfer brought: its size, its hex digest, and the server's Content-Type."""

    size: int
    digest: str
    content_type: str = ""


def _user_agent() -> str:
    from ... import __version__

    return f"resnet-keras/{__version__}"


def _progress(total: int | None, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, leave=True, dynamic_ncols=True,
    )


def too_big(limit: int) -> TransferError:
    return TransferError(
        f"sent more than the {limit:,} bytes the manifest allows for this file "
        "(stopped reading there)",
        retryable=False, integrity=True,
    )


def _open(session, url: str, guard: _guard.Guard):
    """GET `url`, following allowed redirects by hand; the final response."""
    import requests

    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    current, timeout = url, guard.timeout
    for hop in range(MAX_REDIRECTS + 1):
        guard.hop = hop
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


def transfer(
    url: str, out: BinaryIO, *, algorithm: str, limit: int, timeout: float, name: str, progressbar: bool
) -> Transferred:
    """GET `url` into `out` (at most `limit` bytes), returning size and hash."""
    guard = _guard.Guard(timeout, limit)
    try:
        with _guard.session(guard) as session:
            return _read_body(session, url, out, guard, algorithm=algorithm, name=name,
                              progressbar=progressbar)
    except TransferError:
        raise
    except OSError as error:  # requests' and urllib3's errors: a connect or handshake timeout?
        if guard.phase in (_guard.CONNECT, _guard.TLS) and _timed_out(error):
            raise guard.over_time() from error
        raise


def _read_body(session, url, out, guard, *, algorithm, name, progressbar) -> Transferred:
    import urllib3

    limit = guard.limit
    digest = hashlib.new(algorithm)
    size = 0
    response = _open(session, url, guard)
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
        with _progress(length, name, progressbar) as bar:
            try:
                while True:
                    chunk = response.raw.read1(CHUNK_BYTES, decode_content=False)
                    if not chunk:
                        break
                    size += len(chunk)
                    guard.file_bytes = size
                    if size > limit:
                        raise too_big(limit)
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
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
    """(one-line reason, retryable) for a failed transfer.

    The reason comes from the error's root cause, not from requests' text
    (which quotes the whole URL first), so what names the cause survives a
    long URL.
    """
    import requests

    if isinstance(error, TransferError):
        return str(error), error.retryable
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        reason = error.response.reason or ""
        return f"HTTP {status} {reason}".strip(), status >= 500
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects (a redirect loop?)", False
    tls = next((e for e in _causes(error) if isinstance(e, ssl.SSLError)), None)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (
            f"TLS/SSL error: certificate verify failed ({tls.verify_message}): the "
            "server's certificate is not trusted here (for a mirror of your own, set "
            "REQUESTS_CA_BUNDLE to its CA bundle)", False,
        )
    if tls is not None:
        return f"TLS/SSL error: {first_line(tls)}", True
    if isinstance(error, requests.ConnectTimeout):
        return f"cannot connect within {timeout:g} s (connect timeout)", True
    if isinstance(error, requests.Timeout):
        return f"connected, but no answer within {timeout:g} s (timeout)", True
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect ({first_line(_causes(error)[-1])})", True
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__}: {first_line(_causes(error)[-1])}", False
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device holding the cache", False
    if isinstance(error, OSError):
        return f"{error.strerror or error}", False
    return f"{type(error).__name__}: {first_line(error)}", False


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps (causes, contexts, urllib3's `reason`), outermost first."""
    found, todo = [], [error]
    while todo and len(found) < 32:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return found


def _timed_out(error: BaseException) -> bool:
    # socket.timeout itself: urllib3's NewConnectionError (a refused
    # connection) subclasses its ConnectTimeoutError, so those names lie.
    return any(isinstance(cause, TimeoutError) for cause in _causes(error))
