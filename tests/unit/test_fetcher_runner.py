"""The run loop: poll timing, backoff, and keeping the proxy up, on a fake clock and proxy."""

from __future__ import annotations

import pytest

from envoy_fetcher.errors import EnvoyError
from envoy_fetcher.poll import Step, StepResult
from envoy_fetcher.runner import Runner, next_delay
from tests.fakes import FakeClock, FakeProxy, FakeStop


class FakePoller:
    """Answers polls with ``results`` in turn; ``applies`` puts a release on disk."""

    def __init__(self, clock: FakeClock, results: list[StepResult], release: str | None = None):
        self.clock = clock
        self.results = results
        self.release = release
        self.polled_at: list[float] = []
        self.errors: list[str] = []
        self.rejected: list[tuple[str, str]] = []

    def poll_once(self) -> Step:
        self.polled_at.append(self.clock.now)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if result == "applied":
            self.release = "v1"
        return Step(result)

    def serving(self) -> str | None:
        return self.release

    def note_error(self, message: str) -> None:
        self.errors.append(message)

    def note_rejected(self, version: str, reason: str) -> None:
        self.rejected.append((version, reason))


def runner(poller: FakePoller, proxy: FakeProxy | None, clock: FakeClock) -> Runner:
    return Runner(
        poller,
        proxy,
        interval=10,
        jitter=0.1,
        backoff_max=50,
        ready_timeout=1,
        clock=clock.monotonic,
        rand=lambda: 0.5,
    )


def run_polls(r: Runner, poller: FakePoller, stop: FakeStop, polls: int) -> None:
    """Run until ``polls`` polls happened (the stop signal is set from inside the poller)."""
    poll_once = poller.poll_once

    def counting() -> Step:
        step = poll_once()
        if len(poller.polled_at) >= polls:
            stop.set()
        return step

    poller.poll_once = counting  # type: ignore[method-assign]
    r.run(stop)


def test_backoff_doubles_on_failures_and_is_capped() -> None:
    """Poll delays: interval with jitter; doubled per failure up to the cap."""
    assert next_delay(10, 0.1, 0, 120, 0.5) == 10
    assert next_delay(10, 0.1, 0, 120, 1.0) == pytest.approx(11)
    assert next_delay(10, 0.1, 0, 120, 0.0) == pytest.approx(9)
    assert [next_delay(10, 0, n, 120, 0.5) for n in range(1, 6)] == [20, 40, 80, 120, 120]


def test_polls_back_off_while_they_fail_and_recover_after_one_success() -> None:
    """Gaps between polls: 20, 40, 50 (cap) while failing, the interval again after success."""
    clock = FakeClock()
    poller = FakePoller(clock, ["error", "error", "error", "not_modified", "not_modified"])
    stop = FakeStop(clock)
    run_polls(runner(poller, None, clock), poller, stop, 6)
    gaps = [b - a for a, b in zip(poller.polled_at, poller.polled_at[1:], strict=False)]
    assert gaps == [20, 40, 50, 10, 10]
    assert max(stop.waited) == 0.5  # the wait is sliced so the proxy is checked in between


def test_a_release_on_disk_starts_the_proxy_before_the_first_poll() -> None:
    """Fast start: the proxy serves the last release even if the store never answers."""
    clock = FakeClock()
    proxy = FakeProxy()
    poller = FakePoller(clock, ["error"], release="v0")
    starts_at_first_poll: list[int] = []
    poll_once = poller.poll_once

    def observed() -> Step:
        starts_at_first_poll.append(proxy.starts)
        return poll_once()

    poller.poll_once = observed  # type: ignore[method-assign]
    runner(poller, proxy, clock).run(FakeStop(clock, waits=1))
    assert starts_at_first_poll == [1]


def test_without_a_release_the_proxy_starts_with_the_first_applied_bundle() -> None:
    """No release and nothing published: the proxy waits, then starts once one is applied."""
    clock = FakeClock()
    proxy = FakeProxy()
    poller = FakePoller(clock, ["missing", "missing", "applied", "not_modified"])
    r = runner(poller, proxy, clock)
    run_polls(r, poller, FakeStop(clock), 2)
    assert proxy.starts == 0
    run_polls(r, poller, FakeStop(clock), 4)
    assert proxy.starts == 1


def test_a_proxy_that_dies_between_polls_is_restarted() -> None:
    """Supervision runs while waiting for the next poll, not only at poll time."""
    clock = FakeClock()
    proxy = FakeProxy()
    poller = FakePoller(clock, ["not_modified"], release="v0")
    stop = FakeStop(clock, waits=3)
    r = runner(poller, proxy, clock)
    proxy.start(1)
    proxy.alive = False  # died before the loop; the first supervision brings it back
    r.run(stop)
    assert proxy.alive and proxy.starts >= 2 and proxy.supervised >= 3


def test_a_proxy_that_cannot_start_is_recorded_and_retried() -> None:
    """A start failure is noted as the fetcher's last error; the loop keeps polling."""
    clock = FakeClock()
    proxy = FakeProxy(start_error=EnvoyError("cannot start envoy 'nope'"))
    poller = FakePoller(clock, ["not_modified"], release="v0")
    run_polls(runner(poller, proxy, clock), poller, FakeStop(clock), 3)
    assert len(poller.polled_at) == 3
    assert poller.errors == ["cannot start envoy 'nope'"] * 4  # fast start + after each poll


def test_a_release_envoy_refuses_at_fast_start_is_rejected() -> None:
    """Envoy started on the release on disk refuses it (e.g. its port is taken): the poller
    marks that release rejected with the proxy's reason."""
    clock = FakeClock()
    poller = FakePoller(clock, ["not_modified"], release="v1")
    proxy = FakeProxy(start_verdict="rejected", reason="envoy cannot bind port 127.0.0.1:8080")
    run_polls(runner(poller, proxy, clock), poller, FakeStop(clock), 1)
    assert poller.rejected == [("v1", "envoy cannot bind port 127.0.0.1:8080")]
