"""A real HTTP server on 127.0.0.1 that serves scripted responses.

`Mirror.add(path, body)` serves bytes; `Mirror.script(path, [...])` serves
a sequence of behaviours, one per request (the last one repeats). Every
request is logged, so tests can assert how often the network was used.
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    send_length: bool = True
    truncate_to: int | None = None  # announce the full length, send less
    delay: float = 0.0  # seconds to wait before answering (a hang)
    location: str | None = None  # for redirects


class Mirror:
    def __init__(self):
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                mirror.requests.append(self.path)
                replies = mirror.routes.get(self.path) or [Reply(404, b"not found")]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                if reply.location:
                    self.send_header("Location", reply.location)
                if reply.send_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                body = reply.body
                if reply.truncate_to is not None:
                    body = body[: reply.truncate_to]
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

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
