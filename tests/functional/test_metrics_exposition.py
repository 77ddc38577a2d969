"""Both processes' /metrics, read over loopback with prometheus_client's parser (what a
Prometheus server sees): timestamps are exact to the second, large counters keep counting."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer

import pytest

from configurator.metrics import Metrics, record_cycle, serve_metrics
from configurator.report import CycleReport
from envoy_fetcher.metrics import serve_fetcher_metrics
from sandbox.moto import free_port
from shared.errors import EndpointBindError, SettingsError
from tests.prometheus import Samples, scrape, value


@contextlib.contextmanager
def stopping(server: ThreadingHTTPServer) -> Iterator[None]:
    """Shut the endpoint down (and close its socket) when the block ends."""
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def assert_exact(
    scrapes: tuple[Samples, Samples], counted: str, stamped: str, window: tuple[float, float]
) -> None:
    """``counted`` went from 10^7 to 10^7 + 1; ``stamped`` is a time inside ``window`` (so it is
    the real time to the second)."""
    first, second = scrapes
    assert (value(first, counted), value(second, counted)) == (10**7, 10**7 + 1)
    stamp = value(second, stamped)
    assert window[0] <= stamp <= window[1] and int(stamp) in {int(t) for t in window}


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def test_configurator_metrics_are_exact(port: int) -> None:
    """last_success is the real time to the second; a counter past 10^7 moves by one."""
    metrics = Metrics()
    with stopping(serve_metrics(metrics, "127.0.0.1", port)):
        record_cycle(metrics, CycleReport("published", "v1", calls=10**7, seconds=1.5))
        first = scrape(port)
        before = time.time()
        record_cycle(metrics, CycleReport("unchanged", "v1", calls=1, seconds=0.2))
        after = time.time()
        second = scrape(port)
    assert_exact(
        (first, second),
        "nightjar_configurator_cloudmap_calls_total",
        "nightjar_configurator_last_success_timestamp_seconds",
        (before, after),
    )
    assert value(second, "nightjar_configurator_cycle_seconds_count") == 2
    assert value(second, "nightjar_configurator_cycle_seconds_bucket", le="2.5") == 2
    assert value(second, "nightjar_configurator_cycles_total", outcome="failed") == 0


def test_configurator_healthz_follows_the_last_good_cycle(port: int) -> None:
    """/healthz is 200 while the last good cycle is recent, 503 once it is older than the limit;
    a failed cycle does not count as good."""
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    url = f"http://127.0.0.1:{port}/healthz"
    with stopping(serve_metrics(metrics, "127.0.0.1", port, max_age=60)):
        assert urllib.request.urlopen(url, timeout=5).status == 200  # starting
        record_cycle(metrics, CycleReport("published", "v1"))
        now[0] += 50
        record_cycle(metrics, CycleReport("failed", error="throttled"))
        assert urllib.request.urlopen(url, timeout=5).status == 200
        now[0] += 20
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(url, timeout=5)
        assert failed.value.code == 503 and b"last good cycle 70s ago" in failed.value.read()


def test_fetcher_metrics_are_exact(port: int) -> None:
    """Poll timestamp is the real time to the second; bytes past 10^7 move by one; the applied
    version, its age, releases by result and Envoy restarts are exposed."""
    metrics, server = serve_fetcher_metrics("127.0.0.1", port)
    with stopping(server):
        before = time.time()
        metrics.polled("changed")
        after = time.time()
        metrics.downloaded(10**7)
        created = datetime.now(UTC) - timedelta(seconds=30)
        metrics.serving("v1", created)
        metrics.release("applied")
        metrics.release("rolled_back")
        metrics.envoy_restarted()
        first = scrape(port)
        metrics.downloaded(1)
        metrics.polled("error")
        second = scrape(port)
    assert_exact(
        (first, second),
        "nightjar_fetcher_downloaded_bytes_total",
        "nightjar_fetcher_last_successful_poll_timestamp_seconds",
        (before, after),
    )
    assert value(second, "nightjar_fetcher_polls_total", result="error") == 1
    assert value(second, "nightjar_fetcher_applied_version_info", version="v1") == 1
    assert 29 <= value(second, "nightjar_fetcher_applied_version_age_seconds") < 60
    assert value(second, "nightjar_fetcher_releases_total", result="rolled_back") == 1
    assert value(second, "nightjar_fetcher_last_release_rejected") == 1
    assert value(second, "nightjar_fetcher_envoy_restarts_total") == 1
    assert value(second, "nightjar_fetcher_seconds_since_last_successful_poll") < 5


def test_a_taken_port_and_a_foreign_host_are_clear_errors(port: int) -> None:
    """Port in use: EndpointBindError naming it; an address not on this host: SettingsError."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(EndpointBindError, match=f"127.0.0.1:{port} is already in use"):
            serve_metrics(Metrics(), "127.0.0.1", port)
    with pytest.raises(SettingsError, match="NJ_METRICS_HOST"):
        serve_fetcher_metrics("192.0.2.1", port)
