"""Cycle metrics: what one cycle report adds to the exposition."""

from __future__ import annotations

from configurator.metrics import Metrics, record_cycle
from configurator.report import CycleReport
from shared.models import Problem
from tests.prometheus import parse, value


def test_record_cycle_counts_outcomes_and_gauges_problems_of_good_cycles_only() -> None:
    """Outcomes are counted by label; problems and last success change only on good cycles;
    a failed cycle's Cloud Map calls are counted too."""
    metrics = Metrics(clock=lambda: 1_796_000_000.25)
    problem = Problem(where="fish/eel", item="attribute 'COLOR'", reason="missing")
    record_cycle(metrics, CycleReport("published", "v1", problems=[problem], calls=3))
    record_cycle(metrics, CycleReport("failed", error="throttled", calls=2))
    samples = parse(metrics.render())
    assert value(samples, "nightjar_configurator_cycles_total", outcome="published") == 1
    assert value(samples, "nightjar_configurator_cycles_total", outcome="failed") == 1
    assert value(samples, "nightjar_configurator_cycles_total", outcome="frozen") == 0
    assert value(samples, "nightjar_configurator_cloudmap_calls_total") == 5
    assert value(samples, "nightjar_configurator_cloudmap_calls_last_cycle") == 2
    assert value(samples, "nightjar_configurator_published_versions_total") == 1
    assert value(samples, "nightjar_configurator_problems") == 1
    stamp = value(samples, "nightjar_configurator_last_success_timestamp_seconds")
    assert stamp == 1_796_000_000.25  # full precision, not 6 significant digits
