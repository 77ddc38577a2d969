"""Structured logging output and the NJ_ settings pattern."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError

from configurator.settings import ConfiguratorSettings
from envoy_fetcher.settings import FetcherSettings
from shared.logs import configure_logging, get_logger
from shared.settings import NightjarSettings


def test_json_log_lines_carry_event_and_fields() -> None:
    """Off a terminal, each record is one JSON object with the event name and bound fields."""
    out = io.StringIO()
    configure_logging("INFO", "auto", out)
    get_logger("nightjar.test").info("manifest.swapped", version="v1", etag='"abc"')
    get_logger("nightjar.test").debug("hidden")
    line = json.loads(out.getvalue().strip())
    assert line["event"] == "manifest.swapped"
    assert (line["version"], line["etag"], line["level"]) == ("v1", '"abc"', "info")
    logging.getLogger().handlers.clear()


def test_human_format_on_request() -> None:
    """NJ_LOG_FORMAT=human prints key=value pairs."""
    out = io.StringIO()
    configure_logging("DEBUG", "human", out)
    get_logger("t").warning("cycle.failed", namespace="fish")
    assert "cycle.failed namespace=fish" in out.getvalue()
    logging.getLogger().handlers.clear()


def test_settings_read_the_nj_prefix_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment NJ_* fills settings; keyword arguments (click flags) override it."""
    monkeypatch.setenv("NJ_BUCKET", "from-env")
    monkeypatch.setenv("NJ_PREFIX", "p1")
    assert NightjarSettings().bucket == "from-env"
    assert NightjarSettings(bucket="flag").bucket == "flag"
    assert NightjarSettings().prefix == "p1"
    monkeypatch.setenv("NJ_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        NightjarSettings()


def test_settings_env_names_match_in_any_case_and_strings_are_parsed_by_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NJ_<FIELD> in any case fills a field, parsed by its type; a comma list splits; unknown
    NJ_* variables are ignored while an unknown keyword is an error; defaults are validated."""
    monkeypatch.setenv("nj_bucket", "lower")
    monkeypatch.setenv("NJ_POLL_INTERVAL", "2.5")
    monkeypatch.setenv("NJ_METRICS_PORT", "9100")
    monkeypatch.setenv("NJ_NAMESPACES", "a.local, b.local,")
    monkeypatch.setenv("NJ_NO_SUCH_SETTING", "x")
    fetcher = FetcherSettings()
    assert (fetcher.bucket, fetcher.poll_interval, fetcher.metrics_port) == ("lower", 2.5, 9100)
    assert fetcher.envoy_log_level == "info"  # the default went through its validator
    assert ConfiguratorSettings().namespaces == ["a.local", "b.local"]
    with pytest.raises(ValidationError, match="no_such_setting"):
        FetcherSettings(no_such_setting="x")  # type: ignore[call-arg]
    monkeypatch.setenv("NJ_METRICS_PORT", "")
    with pytest.raises(ValidationError, match="metrics_port"):
        FetcherSettings()


@pytest.mark.parametrize(("seconds", "expected"), [(0, 1), (0.2, 1), (5, 5), (2.5, 3)])
def test_envoy_drain_time_is_the_drain_setting_rounded_up(seconds: float, expected: int) -> None:
    """NJ_DRAIN_SECONDS is Envoy's --drain-time-s too, in whole seconds, never shorter, never 0
    (0 cuts connections accepted just before a route change)."""
    assert expected == FetcherSettings(drain_seconds=seconds).envoy_drain_time()


@pytest.mark.parametrize("args", ["--drain-time-s 2", "--concurrency 1 --drain-time-s=2"])
def test_envoy_args_may_not_set_the_drain_time(args: str) -> None:
    """Envoy refuses a flag given twice; the error names the setting to use instead."""
    with pytest.raises(ValidationError, match="set NJ_DRAIN_SECONDS"):
        FetcherSettings(envoy_args=args)
