"""Issue 11: with Envoy in another container (--no-envoy --envoy-admin), swaps are confirmed
through its admin API like a supervised Envoy's, and the fetcher never starts or stops it."""

from __future__ import annotations

import pytest

from envoy_fetcher.envoy import Verdict
from envoy_fetcher.external import ExternalEnvoy
from tests.fakes import FakeAdmin, FakeClock, counters


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (counters(lds_success=1, cds_success=1), "accepted"),
        (counters(cds_rejected=1), "rejected"),
        (counters(lds_success=1), "timeout"),
    ],
)
def test_a_swap_is_judged_by_the_other_envoys_counters(
    after: dict[str, int], expected: Verdict
) -> None:
    """Counters read before the swap, then until a verdict or the timeout."""
    clock = FakeClock()
    admin = FakeAdmin([counters(), after])
    swaps: list[int] = []
    envoy = ExternalEnvoy(admin, clock.monotonic, clock.sleep)
    assert envoy.confirm_swap(lambda: swaps.append(1), 2.0) == expected
    assert swaps == [1]


def test_an_unreachable_admin_api_swaps_unconfirmed() -> None:
    """The files still move (the other Envoy reads them when it is back); nothing is judged."""
    clock = FakeClock()
    swaps: list[int] = []
    envoy = ExternalEnvoy(FakeAdmin([OSError("refused")]), clock.monotonic, clock.sleep)
    assert envoy.confirm_swap(lambda: swaps.append(1), 2.0) == "unconfirmed"
    assert swaps == [1]


def test_it_is_never_started_or_stopped_by_the_fetcher() -> None:
    """start only waits (bounded) for LIVE; stop and supervise leave the other container alone."""
    clock = FakeClock()
    admin = FakeAdmin([counters()], ready_after=3)
    envoy = ExternalEnvoy(admin, clock.monotonic, clock.sleep)
    assert envoy.started() and envoy.start(5.0) == "accepted"
    never = ExternalEnvoy(FakeAdmin([counters()], ready_after=10**6), clock.monotonic, clock.sleep)
    assert never.start(1.0) == "timeout"
    envoy.supervise()
    assert envoy.stop(5.0) is None and admin.drains == 0
