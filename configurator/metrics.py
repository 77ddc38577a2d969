"""Prometheus text exposition of the configurator's counters and gauges (no dependency)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from configurator.report import CycleReport

HELP = {
    "nightjar_configurator_cycles_total": ("counter", "Cycles run, by outcome."),
    "nightjar_configurator_cycle_seconds": ("gauge", "Duration of the last cycle."),
    "nightjar_configurator_cloudmap_calls_total": ("counter", "Cloud Map API calls made."),
    "nightjar_configurator_cloudmap_calls_last_cycle": (
        "gauge",
        "Cloud Map calls of the last cycle.",
    ),
    "nightjar_configurator_published_versions_total": ("counter", "Versions published."),
    "nightjar_configurator_repairs_total": (
        "counter",
        "Versions published to repair a damaged current version.",
    ),
    "nightjar_configurator_problems": ("gauge", "Input items rejected in the last cycle."),
    "nightjar_configurator_last_success_timestamp_seconds": (
        "gauge",
        "End of the last good cycle.",
    ),
    "nightjar_configurator_manifest_frozen": ("gauge", "1 while the manifest is frozen."),
}


class Metrics:
    """Thread-safe metric values keyed by (name, label value)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], float] = {}

    def inc(self, name: str, amount: float = 1, outcome: str = "") -> None:
        with self._lock:
            self._values[(name, outcome)] = self._values.get((name, outcome), 0) + amount

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[(name, "")] = value

    def render(self) -> str:
        """The exposition text, every known metric present (zero until set)."""
        lines = []
        with self._lock:
            values = dict(self._values)
        for name, (kind, text) in HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            labelled = sorted((o, v) for (n, o), v in values.items() if n == name)
            if not labelled:
                labelled = [("", 0.0)]
            for outcome, value in labelled:
                label = f'{{outcome="{outcome}"}}' if outcome else ""
                lines.append(f"{name}{label} {value:g}")
        return "\n".join(lines) + "\n"


def record_cycle(metrics: Metrics, report: CycleReport) -> None:
    """Count one cycle: its outcome, duration and Cloud Map calls; problems after good ones."""
    metrics.inc("nightjar_configurator_cycles_total", outcome=report.outcome)
    metrics.set("nightjar_configurator_cycle_seconds", report.seconds)
    metrics.inc("nightjar_configurator_cloudmap_calls_total", report.calls)
    metrics.set("nightjar_configurator_cloudmap_calls_last_cycle", report.calls)
    metrics.set("nightjar_configurator_manifest_frozen", 1 if report.outcome == "frozen" else 0)
    if report.outcome == "published":
        metrics.inc("nightjar_configurator_published_versions_total")
    if report.repaired:
        metrics.inc("nightjar_configurator_repairs_total")
    if report.outcome in ("published", "unchanged"):
        metrics.set("nightjar_configurator_problems", len(report.problems))
        metrics.set("nightjar_configurator_last_success_timestamp_seconds", time.time())


def serve_metrics(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server
