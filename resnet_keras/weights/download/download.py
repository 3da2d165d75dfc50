"""Downloads: one URL's bytes into memory, bounded in every phase and checked against the manifest.

`_transfer` brings the bytes (bounded, hashed on the way) into a buffer of
our own: `transfer` for http(s) (below: one bounded HTTP transfer, and the
one bounded reader for every phase of a request), a bounded copy for a
file:// mirror. `download_verified` checks the manifest's hash on those
bytes and returns them; the cache (cache.store_download) checks a prefix
hash's full-hash record and gives them their name in one atomic step
(files.replaced). The caller loads the
same bytes from memory (the shared-cache rule, snapshot.py): a program that
rewrites the cached file afterwards (keras) cannot change what loads.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import math
import os
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ...errors import first_line
from ...errors import DownloadError, IntegrityError, ManifestError
from ..formats.registry import looks_like_html
from ..manifest.records import WeightsFile, check_redirect


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


def _transfer(url: str, out: BinaryIO, **kwargs) -> Transferred:
    """The one call that moves bytes (tests replace it to simulate faults)."""
    if url.startswith("file:"):
        return _copy_local(url, out, algorithm=kwargs["algorithm"], limit=kwargs["limit"])
    return transfer(url, out, **kwargs)


def _copy_local(url: str, out: BinaryIO, *, algorithm: str, limit: int) -> Transferred:
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
                raise too_big(limit)
            digest.update(chunk)
            out.write(chunk)
    return Transferred(size, digest.hexdigest())


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
            reason, retryable = describe(error, timeout)
            integrity = getattr(error, "integrity", False)
            if not retryable or attempt == MAX_RETRIES:
                if attempt:
                    waited = time.monotonic() - started
                    reason += f" ({attempt + 1} tries, {waited:.0f} s in all)"
                raise Failure(reason, integrity=integrity) from error
            time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def _check(got: Transferred, data: bytes, wfile: WeightsFile) -> None:
    """Raise Failure unless the bytes are the ones the manifest declares."""
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


def download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool, timeout: float) -> tuple[bytes, str]:
    """(bytes, hex digest) of `url`, in memory and matching the manifest; or raise Failure.

    `path` is where the caller will store them (named in the progress line).
    Nothing is written here: the cache keeps the bytes (cache.store_download).
    """
    if progressbar:  # say what is fetched where before the first byte moves (keras does too)
        print(f"Downloading {url} -> {path}", file=sys.stderr, flush=True)
    received = io.BytesIO()  # ours alone: nothing else can change it
    got = _attempts(url, wfile, received, progressbar, timeout)
    data = received.getvalue()
    _check(got, data, wfile)
    return data, got.digest


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


# --------------------------------------------------------------------------
# One bounded HTTP(S) transfer: a URL's bytes into a file object (our memory), hashed on the way.
#
# Every rule that protects the user's machine from a server lives here:
# - redirects are followed by hand, each checked by the URL policy before it
#   is requested, and never from https down to plain http (loopback
#   included: a mirror must not reach services on the user's machine);
# - `Accept-Encoding: identity` is asked and the raw bytes are stored, so a
#   compressed body can never inflate on the user's disk;
# - no more bytes are read than the limit allows (the manifest's size, else
#   the size its parameter count implies, else Content-Length);
# - every phase of a request (connect, TLS handshake, status line and
#   headers, any 100 Continue, every redirect, the body, a chunked trailer)
#   is read by one bounded reader, `guard.Guard`: a timeout per phase, one
#   deadline for everything before the body, and the stall rule for the body
#   (below guard.MIN_BYTES_PER_SECOND for a whole timeout period: dropped), so no
#   server can hold a download (and every process waiting on its lock)
#   forever.
# Failures raise TransferError with a one-line reason (which keeps what names
# the cause, a TLS failure for one, whatever the URL's length) and whether a
# retry could help.

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


def _open(session, url: str, guard: Guard):
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
    guard = Guard(timeout, limit)
    try:
        with guarded_session(guard) as session:
            return _read_body(session, url, out, guard, algorithm=algorithm, name=name,
                              progressbar=progressbar)
    except TransferError:
        raise
    except OSError as error:  # requests' and urllib3's errors: a connect or handshake timeout?
        if guard.phase in (CONNECT, TLS) and _timed_out(error):
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


# --------------------------------------------------------------------------
# One bounded reader for every phase of a request.
#
# Every byte a server sends passes `Guard`: requests' connections get a socket
# whose reads go through it (`_GuardedSocket`), so the status line and
# headers, any `100 Continue`, every redirect, the body and a chunked body's
# trailer are read under the same rules; connect and the TLS handshake get
# socket deadlines from the same guard. The rules, with T the timeout
# (RESNET_KERAS_TIMEOUT):
#
# - no read waits more than T for its first byte;
# - connect, the TLS handshake, the head of a response (status line, headers,
#   any 100 Continue) and a chunked trailer each end within T, and all phases
#   before the body (every redirect included) within HEAD_TIMEOUTS x T;
# - the body obeys the stall rule: at least MIN_BYTES_PER_SECOND over each
#   period of T;
# - a head or a trailer is at most MAX_HEAD_BYTES; the body on the wire (chunk
#   framing included) at most twice the file's byte limit plus that.
#
# So a request ends within (HEAD_TIMEOUTS + 1) x T plus the time its body
# takes at the floor rate, whatever the server does. A broken rule raises
# TransferError: one line naming the phase and the limit.

# The stall floor: a body averaging less than this over a whole timeout
# period is dropped (a healthy link is thousands of times faster).
MIN_BYTES_PER_SECOND = 1024
# Everything before the body (connect, TLS, heads, redirects) shares this
# many timeouts: a mirror that answers at all does so in a fraction of one.
HEAD_TIMEOUTS = 3
MAX_HEAD_BYTES = 64 << 10

CONNECT = "TCP connect"
TLS = "TLS handshake"
HEAD = "status line and headers"
BODY = "body"
TRAILER = "chunked trailer after the body"
_BEFORE_BODY = (CONNECT, TLS, HEAD)


class TransferError(Exception):
    """A transfer failed: `str()` is the reason, one line."""

    def __init__(self, reason: str, *, retryable: bool, integrity: bool = False):
        super().__init__(reason)
        self.retryable = retryable
        self.integrity = integrity


class Guard:
    """Where one request is (its phase), and whether it still keeps the rules."""

    def __init__(self, timeout: float, limit: int):
        self.timeout, self.limit = timeout, limit
        self.head_deadline = time.monotonic() + HEAD_TIMEOUTS * timeout
        self.hop = 0  # 0: the URL itself; k: its k-th redirect
        self.file_bytes = 0  # of the body, as the reader delivered them (for messages)
        self.enter(CONNECT)

    def enter(self, phase: str) -> float:
        """Start `phase`; returns how long its first wait may block."""
        now = time.monotonic()
        self.phase, self.bytes = phase, 0
        self.window_start, self.window_bytes = now, 0
        if phase == BODY:
            self.deadline = math.inf  # the stall rule bounds it
        elif phase in _BEFORE_BODY:
            self.deadline = min(now + self.timeout, self.head_deadline)
        else:
            self.deadline = now + self.timeout
        return self.wait()

    @property
    def where(self) -> str:
        hop = f" of redirect {self.hop}" if self.hop and self.phase in _BEFORE_BODY else ""
        return f"the {self.phase}{hop}"

    def wait(self) -> float:
        """How long the next read (or connect, or handshake) may block; raises when time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.over_time()
        return min(self.timeout, left)

    def over_time(self) -> TransferError:
        """The phase's time is up."""
        if self.deadline == self.head_deadline:
            limit = (
                f"took more than {HEAD_TIMEOUTS * self.timeout:g} s ({HEAD_TIMEOUTS} x "
                f"RESNET_KERAS_TIMEOUT) for everything before the body ({self.hop} redirects)"
            )
        elif self.phase == HEAD and not self.bytes:
            to = f" to redirect {self.hop}" if self.hop else ""
            return TransferError(
                f"connected{to}, but no answer within {self.timeout:g} s (timeout)", retryable=True
            )
        else:
            limit = f"did not finish within {self.timeout:g} s (RESNET_KERAS_TIMEOUT)"
        came = f"; {self.bytes:,} bytes came (a trickling server?)" if self.bytes else ""
        return TransferError(f"{self.where} {limit}{came}", retryable=True)

    def silent(self) -> TransferError:
        """A read got no byte in its whole wait."""
        if self.phase != BODY:  # its wait ran to the phase's deadline
            return self.over_time()
        return TransferError(
            f"no data for {self.timeout:g} s in the middle of the file, after "
            f"{self.file_bytes:,} bytes (read timeout, RESNET_KERAS_TIMEOUT)",
            retryable=True,
        )

    def received(self, count: int) -> None:
        """Count the bytes of one read against the phase's byte bound and the stall rule."""
        self.bytes += count
        cap = 2 * self.limit + MAX_HEAD_BYTES if self.phase == BODY else MAX_HEAD_BYTES
        if self.bytes > cap:
            raise TransferError(
                f"sent more than {cap:,} bytes in {self.where}, the most it may take "
                "(stopped reading there)",
                retryable=False,
            )
        if self.phase != BODY:
            return
        self.window_bytes += count
        elapsed = time.monotonic() - self.window_start
        if elapsed >= self.timeout:
            if self.window_bytes < MIN_BYTES_PER_SECOND * elapsed:
                raise TransferError(
                    f"stalled: {self.window_bytes:,} bytes in {elapsed:.1f} s of the body, "
                    f"below the floor of {MIN_BYTES_PER_SECOND:,} bytes/s for a whole "
                    f"timeout period ({self.timeout:g} s, RESNET_KERAS_TIMEOUT)",
                    retryable=True,
                )
            self.window_start, self.window_bytes = time.monotonic(), 0


class _GuardedSocket:
    """A connection's socket whose every read passes the guard.

    http.client reads through `makefile`; the stdlib's own `makefile` is
    used over this object, with the same deferred close (`_io_refs`), so
    that http.client's hand-over of the socket to its response works.
    """

    def __init__(self, sock, guard: Guard):
        self._sock, self.guard = sock, guard
        self._io_refs, self._closed = 0, False

    makefile = socket.socket.makefile

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        return self._read(self._sock.recv_into, buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._read(self._sock.recv, bufsize, flags)

    def _read(self, read, *args):
        self._sock.settimeout(self.guard.wait())
        try:
            result = read(*args)
        except TimeoutError as error:  # socket.timeout, for plain and TLS sockets
            raise self.guard.silent() from error
        self.guard.received(result if isinstance(result, int) else len(result))
        return result

    def _decref_socketios(self) -> None:
        self._io_refs = max(0, self._io_refs - 1)
        if self._closed:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name):  # sendall, fileno, shutdown, settimeout, ...
        return getattr(self._sock, name)


class _GuardedResponse(http.client.HTTPResponse):
    """http.client's response, telling the guard which phase it reads."""

    def __init__(self, sock, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self._guard = getattr(sock, "guard", None)  # None: a proxy's CONNECT answer

    def begin(self):
        if self._guard:
            self._guard.enter(HEAD)
        super().begin()
        if self._guard:
            self._guard.enter(BODY)

    def _read_and_discard_trailer(self):  # http.client's reader of a chunked trailer
        if self._guard:
            self._guard.enter(TRAILER)
        super()._read_and_discard_trailer()


def _guarded_connection(base, guard: Guard, *, tls: bool):
    class GuardedConnection(base):
        response_class = _GuardedResponse

        def _new_conn(self):  # urllib3's TCP connect (the TLS handshake comes after it)
            self.timeout = guard.enter(CONNECT)
            sock = super()._new_conn()
            if tls:
                sock.settimeout(guard.enter(TLS))  # the handshake's deadline, as a whole
            return sock

        def connect(self):
            super().connect()
            self.sock = _GuardedSocket(self.sock, guard)

    return GuardedConnection


def guarded_session(guard: Guard):
    """A requests Session whose connections read through `guard`."""
    import requests
    from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.connection import HTTPConnection, HTTPSConnection

    pools = {
        "http": type("GuardedPool", (HTTPConnectionPool,), {
            "ConnectionCls": _guarded_connection(HTTPConnection, guard, tls=False)}),
        "https": type("GuardedTLSPool", (HTTPSConnectionPool,), {
            "ConnectionCls": _guarded_connection(HTTPSConnection, guard, tls=True)}),
    }

    class GuardedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):  # SOCKS pools are their own
                manager.pool_classes_by_scheme = pools
            return manager

    result = requests.Session()
    for prefix in ("http://", "https://"):
        result.mount(prefix, GuardedAdapter())
    return result
