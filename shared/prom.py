"""Declaring Prometheus metrics in one registry, one line each.

``prometheus_client`` is imported inside these functions, never at import time, so a module
that uses them (the fetcher's metrics) keeps the library out of a process with metrics off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge


def counter(
    registry: CollectorRegistry, name: str, text: str, label: str = "", values: Sequence[str] = ()
) -> Counter:
    """A counter (exposed as ``<name>_total``), with one optional label preset to ``values``."""
    from prometheus_client import Counter

    metric = Counter(name, text, [label] if label else [], registry=registry)
    for value in values:
        metric.labels(value)
    return metric


def gauge(registry: CollectorRegistry, name: str, text: str, label: str = "") -> Gauge:
    """A gauge, with one optional label."""
    from prometheus_client import Gauge

    return Gauge(name, text, [label] if label else [], registry=registry)
