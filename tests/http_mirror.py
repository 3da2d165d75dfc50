"""A real HTTP server on 127.0.0.1 that serves scripted responses.

`Mirror.add(path, body)` serves bytes; `Mirror.script(path, [...])` serves
a sequence of behaviours, one per request (the last one repeats). Every
request is logged, so tests can assert how often the network was used.
`Reply(raw=[Raw(...), ...])` writes the whole answer to the socket as it is
(status line included): a hostile server at any phase. `Listener` is a bare
TCP port for what happens before HTTP: a full accept queue (connect never
completes) or a peer that never finishes a TLS handshake.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Bounds that keep a hostile reply from outliving its test.
ENDLESS_SECONDS = 30.0


@dataclass
class Raw:
    """Bytes written to the socket as they are, `step` bytes then `pause` s; `forever` repeats them."""

    data: bytes
    pause: float = 0.0
    step: int = 1 << 16
    forever: bool = False


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    send_length: bool = True
    truncate_to: int | None = None  # announce the full length, send less
    delay: float = 0.0  # seconds to wait before answering (a hang)
    location: str | None = None  # for redirects
    headers: dict = field(default_factory=dict)  # extra headers (Content-Encoding, ...)
    endless: bool = False  # after the body, repeat it until the client leaves
    trickle: float = 0.0  # seconds between single bytes of the body
    pause_after: int | None = None  # send this many bytes, then wait `delay_mid` s
    delay_mid: float = 0.0
    raw: list[Raw] | None = None  # the whole answer, written as it is (nothing above applies)


class Mirror:
    def __init__(self, tls: tuple[str, str] | None = None):
        """tls: (certificate file, key file) to serve https instead of http."""
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        self.headers: list[dict] = []  # the request headers, in order
        self.scheme = "https" if tls else "http"
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                mirror.requests.append(self.path)
                mirror.headers.append(dict(self.headers))
                replies = mirror.routes.get(self.path) or [Reply(404, b"not found")]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.raw is not None:
                    self.close_connection = True
                    try:
                        self._send_raw(reply.raw)
                    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                        pass
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                if reply.location:
                    self.send_header("Location", reply.location)
                if reply.send_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                body = reply.body
                if reply.truncate_to is not None:
                    body = body[: reply.truncate_to]
                try:
                    self._send(reply, body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                    pass

            def _send(self, reply, body):
                if reply.pause_after is not None:
                    self.wfile.write(body[: reply.pause_after])
                    self.wfile.flush()
                    time.sleep(reply.delay_mid)
                    body = body[reply.pause_after:]
                if reply.trickle:
                    end = time.monotonic() + ENDLESS_SECONDS
                    for byte in body:
                        if time.monotonic() > end:
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                    return
                self.wfile.write(body)
                end = time.monotonic() + ENDLESS_SECONDS
                while reply.endless and time.monotonic() < end:
                    self.wfile.write(body)

            def _send_raw(self, parts):
                end = time.monotonic() + ENDLESS_SECONDS
                for part in parts:
                    while True:
                        for i in range(0, len(part.data), part.step):
                            if time.monotonic() > end:
                                return
                            self.wfile.write(part.data[i:i + part.step])
                            self.wfile.flush()
                            time.sleep(part.pause)
                        if not part.forever:
                            break

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes) -> str:
        return self.script(path, [Reply(body=body)])

    def script(self, path: str, replies: list[Reply]) -> str:
        self.routes["/" + path.lstrip("/")] = list(replies)
        return self.url(path)

    def count(self, path: str) -> int:
        return self.requests.count("/" + path.lstrip("/"))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(folder: Path) -> tuple[str, str]:
    """(certificate file, key file) for 127.0.0.1, valid one day, trusted by no one."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


class Listener:
    """A bare TCP port on 127.0.0.1, for the phases before HTTP.

    backlog_full=True: the accept queue is filled and nothing is accepted,
    so a new connect never completes. Otherwise each connection is accepted
    and sent `trickle` one byte every `pause` s (b"": silence), never a TLS
    handshake. Either way bounded by ENDLESS_SECONDS, and closed on exit.
    """

    def __init__(self, *, backlog_full: bool = False, trickle: bytes = b"", pause: float = 0.05):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0 if backlog_full else 8)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.trickle, self.pause, self.backlog_full = trickle, pause, backlog_full
        self.stop = threading.Event()

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _fill_backlog(self):
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.sockets.append(filler)
        time.sleep(0.05)

    def _serve(self):
        self.server.settimeout(0.05)
        end = time.monotonic() + ENDLESS_SECONDS
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                peer, _ = self.server.accept()
            except OSError:
                continue
            self.sockets.append(peer)
            threading.Thread(target=self._talk, args=(peer, end), daemon=True).start()

    def _talk(self, peer, end):
        data = self.trickle * 100_000
        for i in range(len(data)):
            if self.stop.is_set() or time.monotonic() > end:
                return
            try:
                peer.send(data[i:i + 1])
            except OSError:
                return
            time.sleep(self.pause)
        self.stop.wait(max(0.0, end - time.monotonic()))

    def __enter__(self):
        if self.backlog_full:
            self._fill_backlog()
        else:
            threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for sock in [*self.sockets, self.server]:
            sock.close()
