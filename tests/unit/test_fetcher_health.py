"""``nightjar-fetcher health``: every rule of the verdict, on hand-made state."""

from __future__ import annotations

import pytest

from envoy_fetcher.health import HealthInput, judge_health
from envoy_fetcher.state import FetcherState

GOOD = FetcherState(
    node="fish.service.local/gateway",
    applied_version="v2",
    manifest_version="v2",
    last_release="applied",
    last_release_version="v2",
    confirm="accepted",
    supervised=True,
)


def verdict(state: FetcherState, poll_age: float | None = 5, live: bool | None = True) -> str:
    return "; ".join(judge_health(HealthInput(state, poll_age, 60, live)))


def test_a_node_serving_the_current_version_through_a_live_envoy_is_healthy() -> None:
    """Recent poll, applied == manifest, confirmed, Envoy LIVE: no problem at all."""
    assert verdict(GOOD) == ""


@pytest.mark.parametrize(
    ("changes", "poll_age", "live", "expected"),
    [
        ({}, 61, True, "last successful poll 61s ago"),
        ({}, None, True, "no poll has reached the bundle store"),
        ({"manifest_version": "v3"}, 5, True, "serving v2, not the current version v3"),
        (
            {"last_release": "rejected", "last_release_version": "v3", "bad_versions": {"v3": "x"}},
            5,
            True,
            "version v3 was rejected: x",
        ),
        ({"last_release": "rolled_back", "last_release_version": "v3"}, 5, True, "rolled back"),
        ({}, 5, False, "admin API does not answer LIVE"),
        ({"confirm": "timeout"}, 5, True, "envoy has not confirmed v2 (confirm: timeout)"),
        ({"applied_version": None}, 5, True, "no release applied yet"),
    ],
)
def test_each_reason_makes_the_node_unhealthy(
    changes: dict[str, object], poll_age: float | None, live: bool | None, expected: str
) -> None:
    """A stale poll, a rejected or rolled-back version, an old version, a dead or unconfirmed
    Envoy, or nothing applied: unhealthy, with a sentence naming it."""
    assert expected in verdict(GOOD.model_copy(update=changes), poll_age, live)


def test_without_a_supervised_envoy_its_confirmation_is_not_required() -> None:
    """--no-envoy mode: Envoy is not asked, and an unconfirmed swap is fine."""
    assert verdict(GOOD.model_copy(update={"confirm": "unconfirmed"}), live=None) == ""
