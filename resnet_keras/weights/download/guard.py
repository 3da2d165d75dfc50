"""One bounded reader for every phase of a request.

Every byte a server sends passes `Guard`: requests' connections get a socket
whose reads go through it (`_GuardedSocket`), so the status line and
headers, any `100 Continue`, every redirect, the body and a chunked body's
trailer are read under the same rules; connect and the TLS handshake get
socket deadlines from the same guard. The rules, with T the timeout
(RESNET_KERAS_TIMEOUT):

- no read waits more than T for its first byte;
- connect, the TLS handshake, the head of a response (status line, headers,
  any 100 Continue) and a chunked trailer each end within T, and all phases
  before the body (every redirect included) within HEAD_TIMEOUTS x T;
- the body obeys the stall rule: at least MIN_BYTES_PER_SECOND over each
  period of T;
- a head or a trailer is at most MAX_HEAD_BYTES; the body on the wire (chunk
  framing included) at most twice the file's byte limit plus that.

So a request ends within (HEAD_TIMEOUTS + 1) x T plus the time its body
takes at the floor rate, whatever the server does. A broken rule raises
TransferError: one line naming the phase and the limit.
"""

from __future__ import annotations

import http.client
import math
import socket
import time

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


def session(guard: Guard):
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
