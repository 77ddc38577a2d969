"""The fetcher's metrics: a no-op recorder by default, Prometheus when NJ_METRICS_PORT is set.

``FetcherMetrics`` is what ``poll``, ``envoy`` and the CLI call; it records nothing, so a
sidecar without a metrics port never imports ``prometheus_client`` (nor ``http.server``).
``PrometheusMetrics`` (built by ``serve_fetcher_metrics``, the only place the library is
imported) keeps the values in its own registry and serves them on ``/metrics``, loopback by
default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.prom import counter, gauge

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from prometheus_client import CollectorRegistry

    from shared.http_endpoint import Answer

POLL_RESULTS = ("changed", "not_modified", "missing", "error")
RELEASE_RESULTS = ("applied", "rejected", "rolled_back", "failed")
HELP = {
    "poll_ts": "Unix time of the last poll that reached the store.",
    "since": "Seconds since the last poll that reached the store (since start before one).",
    "info": "1 for the version this node serves.",
    "created": "Unix time the applied version was published.",
    "age": "Seconds since the applied version was published.",
    "rejected": "1 when the newest version tried was rejected or rolled back, else 0.",
}


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
        from prometheus_client import CollectorRegistry  # only when metrics are on

        self.clock = clock
        self.registry: CollectorRegistry = CollectorRegistry()
        r, p = self.registry, "nightjar_fetcher_"
        self.polls = counter(r, p + "polls", "Polls, by result.", "result", POLL_RESULTS)
        self.releases = counter(
            r, p + "releases", "New versions tried, by result.", "result", RELEASE_RESULTS
        )
        self.bytes = counter(r, p + "downloaded_bytes", "Object bytes downloaded.")
        self.restarts = counter(r, p + "envoy_restarts", "Restarts of the supervised Envoy.")
        self.last_poll = gauge(r, p + "last_successful_poll_timestamp_seconds", HELP["poll_ts"])
        self.since_poll = gauge(r, p + "seconds_since_last_successful_poll", HELP["since"])
        self.applied = gauge(r, p + "applied_version_info", HELP["info"], "version")
        self.created = gauge(r, p + "applied_version_created_timestamp_seconds", HELP["created"])
        self.age = gauge(r, p + "applied_version_age_seconds", HELP["age"])
        self.last_rejected = gauge(r, p + "last_release_rejected", HELP["rejected"])
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

    from shared.http_endpoint import serve_routes  # with its HTTP server: only when metrics are on

    metrics = PrometheusMetrics()

    def exposition() -> Answer:
        return 200, CONTENT_TYPE_LATEST, metrics.render()

    server = serve_routes(host, port, {"/metrics": exposition}, "NJ_METRICS_HOST/NJ_METRICS_PORT")
    return metrics, server
