"""The fetcher's metrics: a no-op recorder by default, Prometheus when NJ_METRICS_PORT is set.

``FetcherMetrics`` is what ``poll``, ``envoy`` and the CLI call; it records nothing, so a
sidecar without a metrics port never imports ``prometheus_client``. ``PrometheusMetrics``
(built by ``serve_fetcher_metrics``, the only place the library is imported) keeps the values
in its own registry and serves them on ``/metrics``, loopback by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from shared.http_endpoint import Answer, serve_routes

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

POLL_RESULTS = ("changed", "not_modified", "missing", "error")
RELEASE_RESULTS = ("applied", "rejected", "rolled_back", "failed")


class FetcherMetrics:
    """What the fetcher reports; this base class records nothing (metrics off)."""

    def polled(self, result: str) -> None:
        """One poll ended with ``result`` (``POLL_RESULTS``); all but ``error`` reached S3."""

    def release(self, result: str) -> None:
        """One apply attempt of a new version ended with ``result`` (``RELEASE_RESULTS``)."""

    def downloaded(self, nbytes: int) -> None:
        """Object bytes fetched from the store (cache misses)."""

    def serving(self, version: str, created: datetime) -> None:
        """``version`` (published at ``created``) is the applied release."""

    def envoy_restarted(self) -> None:
        """The supervised Envoy exited and was started again."""


class PrometheusMetrics(FetcherMetrics):
    """The fetcher's values in a ``prometheus_client`` registry of their own."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge  # only when metrics on

        self.clock = clock
        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("nightjar_fetcher_polls", "Polls, by result.", ["result"], registry=r)
        self.releases = Counter(
            "nightjar_fetcher_releases", "New versions tried, by result.", ["result"], registry=r
        )
        for result in POLL_RESULTS:
            self.polls.labels(result)
        for result in RELEASE_RESULTS:
            self.releases.labels(result)
        self.bytes = Counter(
            "nightjar_fetcher_downloaded_bytes", "Object bytes downloaded.", registry=r
        )
        self.restarts = Counter(
            "nightjar_fetcher_envoy_restarts", "Restarts of the supervised Envoy.", registry=r
        )
        self.last_poll = Gauge(
            "nightjar_fetcher_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that reached the store.",
            registry=r,
        )
        self.since_poll = Gauge(
            "nightjar_fetcher_seconds_since_last_successful_poll",
            "Seconds since the last poll that reached the store (since start before one).",
            registry=r,
        )
        self.applied = Gauge(
            "nightjar_fetcher_applied_version_info",
            "1 for the version this node serves.",
            ["version"],
            registry=r,
        )
        self.created = Gauge(
            "nightjar_fetcher_applied_version_created_timestamp_seconds",
            "Unix time the applied version was published.",
            registry=r,
        )
        self.age = Gauge(
            "nightjar_fetcher_applied_version_age_seconds",
            "Seconds since the applied version was published.",
            registry=r,
        )
        self.last_rejected = Gauge(
            "nightjar_fetcher_last_release_rejected",
            "1 when the newest version tried was rejected or rolled back, else 0.",
            registry=r,
        )
        self._polled_at = clock()
        self._created_at: float | None = None
        self._version: str | None = None
        self.since_poll.set_function(lambda: self.clock() - self._polled_at)
        self.age.set_function(self._age)

    def _age(self) -> float:
        return self.clock() - self._created_at if self._created_at is not None else 0.0

    def polled(self, result: str) -> None:
        self.polls.labels(result).inc()
        if result != "error":
            self._polled_at = self.clock()
            self.last_poll.set(self._polled_at)

    def release(self, result: str) -> None:
        self.releases.labels(result).inc()
        if result != "failed":
            self.last_rejected.set(0 if result == "applied" else 1)

    def downloaded(self, nbytes: int) -> None:
        self.bytes.inc(nbytes)

    def serving(self, version: str, created: datetime) -> None:
        if self._version is not None and self._version != version:
            self.applied.remove(self._version)
        self._version = version
        self.applied.labels(version).set(1)
        self._created_at = created.timestamp()
        self.created.set(self._created_at)

    def envoy_restarted(self) -> None:
        self.restarts.inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def serve_fetcher_metrics(host: str, port: int) -> tuple[PrometheusMetrics, ThreadingHTTPServer]:
    """Prometheus metrics served on ``host:port`` ``/metrics`` from a daemon thread."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    metrics = PrometheusMetrics()

    def exposition() -> Answer:
        return 200, CONTENT_TYPE_LATEST, metrics.render()

    server = serve_routes(host, port, {"/metrics": exposition}, "NJ_METRICS_HOST/NJ_METRICS_PORT")
    return metrics, server
