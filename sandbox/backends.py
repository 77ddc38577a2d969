"""Real HTTP backends on 127.0.0.1 that answer with their own name, optionally misbehaving."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Behaviour:
    """How a backend misbehaves: every answer's status, every Nth failing, slowness, health."""

    status: int = 200  # status of every answer to a path other than /health
    fail_every: int = 0  # every Nth such request answers 503 instead (2 = every other one)
    delay: float = 0.0  # seconds to wait before answering such a request
    health: int = 200  # status of GET /health


class Backend:
    """A loopback HTTP server answering ``<name>`` to every GET."""

    def __init__(self, name: str, behaviour: Behaviour | None = None) -> None:
        self.name = name
        self.behaviour = how = behaviour or Behaviour()
        body = name.encode()
        counter = itertools.count(1)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per answer (headers and body), flushed after each request: an
            # unbuffered status line, headers and body as separate small writes meet Nagle's
            # algorithm and the proxy's delayed ACK on a kept-alive connection (~40 ms each).
            wbufsize = 1 << 16

            def do_GET(self) -> None:  # noqa: N802
                status = how.health if self.path == "/health" else self._status()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _status(self) -> int:
                with lock:
                    n = next(counter)
                if how.delay:
                    time.sleep(how.delay)
                return 503 if how.fail_every and n % how.fail_every == 0 else how.status

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def backends(*names: str) -> Iterator[dict[str, Backend]]:
    """Start one backend per name; always shut them down."""
    started = {name: Backend(name) for name in names}
    try:
        yield started
    finally:
        for backend in started.values():
            backend.close()
