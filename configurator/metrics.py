"""The configurator's Prometheus metrics and health verdict (``/metrics`` and ``/healthz``).

``prometheus_client`` writes the exposition (full float precision: a Unix timestamp or a counter
above 10^7 is exact). Every ``Metrics`` has its own registry, so tests and several instances in
one process never share values. ``/healthz`` answers 200 while the last good cycle (published or
unchanged) is younger than ``max_age`` seconds, counted from start-up until the first one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from configurator.report import CycleReport
from configurator.shift import ABORT_CAUSES
from shared.http_endpoint import Answer, serve_routes
from shared.prom import counter, gauge

OUTCOMES = ("published", "unchanged", "frozen", "failed")
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
GOOD = ("published", "unchanged")
CALLS_HELP = "Cloud Map HTTP requests made (every botocore attempt counts once)."
LAST = "Unix time at the end of the last good cycle (published or unchanged)."


class Metrics:
    """The configurator's counters, gauges and cycle-duration histogram in their own registry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.last_good: float | None = None
        self.registry = r = CollectorRegistry()
        self.cycles = counter(
            r, "nightjar_configurator_cycles", "Cycles run, by outcome.", "outcome", OUTCOMES
        )
        self.cycle_seconds = Histogram(
            "nightjar_configurator_cycle_seconds",
            "Duration of each cycle.",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.calls = counter(r, "nightjar_configurator_cloudmap_calls", CALLS_HELP)
        self.calls_last = gauge(
            r, "nightjar_configurator_cloudmap_calls_last_cycle", "Cloud Map requests, last cycle."
        )
        self.published = counter(
            r, "nightjar_configurator_published_versions", "Versions published."
        )
        self.repairs = counter(
            r,
            "nightjar_configurator_repairs",
            "Versions published to repair a damaged current version.",
        )
        self.problems = gauge(
            r, "nightjar_configurator_problems", "Input items rejected in the last good cycle."
        )
        self.last_success = gauge(r, "nightjar_configurator_last_success_timestamp_seconds", LAST)
        self.frozen = gauge(
            r, "nightjar_configurator_manifest_frozen", "1 while the manifest is frozen."
        )
        shift = ["namespace", "service"]
        self.shift_step = Gauge(
            "nightjar_configurator_shift_step",
            "Step (1-based) each traffic shift serves; 0 before its start.",
            shift,
            registry=r,
        )
        self.shift_percent = Gauge(
            "nightjar_configurator_shift_percent",
            "Effective share (percent) of each color of a shifting service, per route pair.",
            [*shift, "color"],
            registry=r,
        )
        self.shift_aborted = Gauge(
            "nightjar_configurator_shift_aborted", "1 while a shift is aborted.", shift, registry=r
        )
        self.shift_aborts = counter(
            r,
            "nightjar_configurator_shift_aborts",
            "Shifts aborted, by reason.",
            "reason",
            ABORT_CAUSES,
        )

    def render(self) -> str:
        """The exposition text, every metric present (zero until set)."""
        return generate_latest(self.registry).decode()

    def last_good_age(self) -> float:
        """Seconds since the last good cycle (since start-up while there was none)."""
        return self.clock() - (self.last_good if self.last_good is not None else self.started)


def record_cycle(metrics: Metrics, report: CycleReport) -> None:
    """Count one cycle: its outcome, duration and Cloud Map calls; problems after good ones."""
    metrics.cycles.labels(report.outcome).inc()
    metrics.cycle_seconds.observe(report.seconds)
    metrics.calls.inc(report.calls)
    metrics.calls_last.set(report.calls)
    metrics.frozen.set(1 if report.outcome == "frozen" else 0)
    if report.outcome == "published":
        metrics.published.inc()
    if report.repaired:
        metrics.repairs.inc()
    for change in report.shift_changes:
        if change.kind == "aborted" and change.state.abort_cause is not None:
            metrics.shift_aborts.labels(change.state.abort_cause).inc()
    if report.outcome in GOOD:
        record_shifts(metrics, report)
        metrics.problems.set(len(report.problems))
        metrics.last_good = metrics.clock()
        metrics.last_success.set(metrics.last_good)


def record_shifts(metrics: Metrics, report: CycleReport) -> None:
    """The gauges of every shift the cycle recorded (shifts that ended disappear)."""
    for metric in (metrics.shift_step, metrics.shift_percent, metrics.shift_aborted):
        metric.clear()
    for s in report.shifts:
        metrics.shift_step.labels(s.namespace, s.service).set(s.step + 1)
        metrics.shift_aborted.labels(s.namespace, s.service).set(int(s.verdict == "aborted"))
        if s.percent is not None:
            metrics.shift_percent.labels(s.namespace, s.service, s.to_color).set(s.percent)
            metrics.shift_percent.labels(s.namespace, s.service, s.from_color).set(100 - s.percent)


def health(metrics: Metrics, max_age: float) -> tuple[bool, str]:
    """Whether the last good cycle is recent enough, and one sentence saying so."""
    age = metrics.last_good_age()
    if metrics.last_good is None and age > max_age:
        return False, f"no good cycle in the {age:.0f}s since start (limit {max_age:g}s)"
    if age > max_age:
        return False, f"last good cycle {age:.0f}s ago (limit {max_age:g}s)"
    if metrics.last_good is None:
        return True, f"starting: no cycle finished yet ({age:.0f}s since start)"
    return True, f"last good cycle {age:.0f}s ago"


def serve_metrics(
    metrics: Metrics, host: str, port: int, max_age: float = 300.0
) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` from a daemon thread."""

    def exposition() -> Answer:
        return 200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry)

    def healthz() -> Answer:
        ok, text = health(metrics, max_age)
        return (200 if ok else 503), "text/plain; charset=utf-8", (text + "\n").encode()

    routes = {"/metrics": exposition, "/healthz": healthz}
    return serve_routes(host, port, routes, "NJ_METRICS_HOST/NJ_METRICS_PORT")
