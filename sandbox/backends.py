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
    # Answer in one write (status line, headers and body together). Unbuffered, they are small
    # separate writes that meet Nagle's algorithm and the proxy's delayed ACK on a kept-alive
    # upstream connection: ~20-40 ms per request behind Envoy. Probes counting hundreds of
    # requests per second (traffic shifts) need it; other tests keep the historical pace.
    one_write: bool = False


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
            wbufsize = (1 << 16) if how.one_write else 0  # flushed after each request

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
def backends(*names: str, behaviour: Behaviour | None = None) -> Iterator[dict[str, Backend]]:
    """Start one backend per name; always shut them down."""
    started = {name: Backend(name, behaviour) for name in names}
    try:
        yield started
    finally:
        for backend in started.values():
            backend.close()
