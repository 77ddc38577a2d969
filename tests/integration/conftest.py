"""Real servers on loopback for integration tests: moto's HTTP server (S3 + Cloud Map)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from sandbox.moto import free_port


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedMotoServer]:
    """A moto HTTP server on 127.0.0.1 that a test may stop (S3 outage)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield server
    finally:
        if server._server_ready_event.is_set():  # noqa: SLF001 (still running)
            host, port = server.get_host_and_port()
            reset = f"http://{host}:{port}/moto-api/reset"
            urllib.request.urlopen(urllib.request.Request(reset, method="POST"))
        stop_moto(server)


def stop_moto(server: ThreadedMotoServer) -> None:
    """Stop serving and close the socket, so clients are refused at once (an outage)."""
    if server._server_ready_event.is_set():  # noqa: SLF001 (moto has no public "running")
        server.stop()
        server._server.server_close()  # noqa: SLF001


@pytest.fixture
def moto_endpoint(
    moto_server: ThreadedMotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The moto server's URL; AWS_ENDPOINT_URL points every client at it."""
    url = "http://{}:{}".format(*moto_server.get_host_and_port())
    # moto keeps its backends in process-global state: start every test from nothing.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
