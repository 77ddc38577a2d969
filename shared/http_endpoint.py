"""A tiny loopback HTTP endpoint for ``/metrics`` and ``/healthz``, served from a daemon thread.

Both processes use it: each route is a function returning (status, content type, body). Nothing
here knows Prometheus; the callers render the exposition text. A port that is taken or a host
that cannot be bound becomes one clear ``NightjarError`` naming the setting, never a traceback.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.errors import EndpointBindError, SettingsError

Answer = tuple[int, str, bytes]
Route = Callable[[], Answer]


def _handler(routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            status, content_type, body = route()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def bind_server(host: str, port: int, routes: dict[str, Route], what: str) -> ThreadingHTTPServer:
    """A server on ``host:port`` for ``routes``; SettingsError/EndpointBindError if it can't bind.

    ``what`` names the settings in messages, e.g. ``NJ_METRICS_HOST/NJ_METRICS_PORT``.
    """
    try:
        return ThreadingHTTPServer((host, port), _handler(routes))
    except socket.gaierror as err:
        raise SettingsError(
            f"metrics host {host!r} is not an address of this machine ({what}): use 127.0.0.1 "
            "or one of this host's addresses"
        ) from err
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise EndpointBindError(
                f"metrics port {host}:{port} is already in use ({what}): stop the other process "
                "or choose a free port"
            ) from err
        if err.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise SettingsError(
                f"metrics host {host!r} cannot be bound here ({what}): use 127.0.0.1 or one of "
                "this host's addresses"
            ) from err
        raise EndpointBindError(f"cannot serve metrics on {host}:{port} ({what}): {err}") from err


def serve_routes(host: str, port: int, routes: dict[str, Route], what: str) -> ThreadingHTTPServer:
    """Bind (see ``bind_server``) and serve from a daemon thread; returns the server."""
    server = bind_server(host, port, routes, what)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server
