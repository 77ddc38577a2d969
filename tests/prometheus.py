"""Reading a /metrics endpoint the way Prometheus does: prometheus_client's text parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """GET /metrics and parse it."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError naming it when absent)."""
    return samples[(name, tuple(sorted(labels.items())))]
