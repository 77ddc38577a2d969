"""In-memory stand-ins for the fetcher's edges: a proxy, Envoy's admin API, a child process,
a clock and a stop signal. No subprocess, no socket, no real time."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from envoy_fetcher.envoy import BIND_FAILURES, COUNTERS, Verdict
from envoy_fetcher.errors import EnvoyError


@dataclass
class FakeClock:
    """Monotonic seconds that only move when something sleeps (or a test says so)."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeStop:
    """A stop signal that waits on a fake clock and sets itself after ``waits`` waits."""

    clock: FakeClock
    waits: int = 1_000_000
    _set: bool = False
    waited: list[float] = field(default_factory=list)

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        self._set = self._set or len(self.waited) >= self.waits
        return self._set

    def set(self) -> None:
        self._set = True


@dataclass
class FakeProxy:
    """A proxy that answers each swap with the next of ``verdicts`` (then "accepted")."""

    verdicts: list[Verdict] = field(default_factory=list)
    start_error: EnvoyError | None = None
    start_verdict: Verdict = "accepted"
    reason: str = ""
    alive: bool = False
    ever_started: bool = False
    starts: int = 0
    supervised: int = 0
    swaps: int = 0
    drained: list[float] = field(default_factory=list)

    def started(self) -> bool:
        return self.ever_started

    def running(self) -> bool:
        return self.alive

    def start(self, ready_timeout: float) -> Verdict:
        if self.start_error is not None:
            raise self.start_error
        self.alive = self.ever_started = True
        self.starts += 1
        return self.start_verdict

    def rejection_reason(self) -> str:
        return self.reason

    def supervise(self) -> None:
        self.supervised += 1
        if self.ever_started and not self.alive:
            self.start(0)

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        swap()
        self.swaps += 1
        if (
            not self.ever_started and not self.alive
        ):  # like EnvoyProcess: the first release starts the proxy, and its boot is judged
            booted = self.start(timeout)
            return self.verdicts.pop(0) if self.verdicts else booted
        if not self.alive:
            return "unconfirmed"
        return self.verdicts.pop(0) if self.verdicts else "accepted"

    def stop(self, drain_seconds: float) -> int | None:
        self.drained.append(drain_seconds)
        self.alive = False
        return 0 if self.ever_started else None


def counters(**moved: int) -> dict[str, int]:
    """Envoy update counters: every one 0 except ``lds_success=1`` style overrides."""
    short = {c.split(".")[1] + "_" + c.rsplit("_", 1)[1]: c for c in COUNTERS}
    short["bind_failures"] = BIND_FAILURES
    values = dict.fromkeys((*COUNTERS, BIND_FAILURES), 0)
    for name, value in moved.items():
        values[short[name]] = value
    return values


@dataclass
class FakeAdmin:
    """Envoy's admin API: counters answered in order (an exception is raised), ready after N."""

    answers: list[dict[str, int] | OSError] = field(default_factory=list)
    ready_after: int = 0
    errors: list[str] = field(default_factory=list)
    ready_calls: int = 0
    drains: int = 0

    def counters(self) -> dict[str, int]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, OSError):
            raise answer
        return answer

    def ready(self) -> bool:
        self.ready_calls += 1
        return self.ready_calls > self.ready_after

    def drain(self) -> None:
        self.drains += 1

    def listener_errors(self) -> list[str]:
        return list(self.errors)


@dataclass
class FakeChild:
    """A child process that runs until ``exit`` is called; ``hangs`` ignores SIGTERM."""

    pid: int = 4242
    code: int | None = None
    hangs: bool = False
    signals: list[int] = field(default_factory=list)
    killed: bool = False
    output: str = ""  # what it wrote on stderr

    def exit(self, code: int) -> None:
        self.code = code

    def recent_output(self) -> str:
        return self.output

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int, /) -> None:
        self.signals.append(sig)
        if not self.hangs:
            self.code = -sig

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None and timeout is not None:
            raise subprocess.TimeoutExpired("envoy", timeout)
        return self.code if self.code is not None else -9

    def kill(self) -> None:
        self.killed = True
        self.code = -9
