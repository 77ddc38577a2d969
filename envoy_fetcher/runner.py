"""The run loop: poll on an interval with jitter, back off while S3 fails, supervise the proxy.

On start the proxy serves the last release on disk at once (before S3 answers); with none it
starts with the first applied bundle. Between polls the proxy is checked twice a second and
restarted (with backoff) if it died.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from envoy_fetcher.envoy import Proxy
from envoy_fetcher.errors import EnvoyError
from envoy_fetcher.poll import Step
from shared.logs import get_logger

log = get_logger(__name__)

SUPERVISE_EVERY = 0.5  # seconds between checks that the proxy is still alive


class Poller(Protocol):
    """One poll step and what it left on disk (``poll.Fetcher``)."""

    def poll_once(self) -> Step: ...
    def serving(self) -> str | None: ...
    def note_error(self, message: str) -> None: ...
    def note_rejected(self, version: str, reason: str) -> None: ...


class StopSignal(Protocol):
    """Set when the process should stop (``threading.Event``)."""

    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def next_delay(interval: float, jitter: float, failures: int, cap: float, rand: float) -> float:
    """Seconds to the next poll: interval +/- jitter, doubled per consecutive failure, capped."""
    base = min(cap, interval * 2**failures) if failures else interval
    return max(0.0, base * (1 + jitter * (2 * rand - 1)))


@dataclass
class Runner:
    """Polls until stopped, keeping a proxy (when there is one) running on the current release."""

    poller: Poller
    proxy: Proxy | None
    interval: float
    jitter: float
    backoff_max: float
    ready_timeout: float
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    _said_waiting: bool = field(default=False, init=False)

    def run(self, stop: StopSignal) -> None:
        """Poll until ``stop`` is set."""
        release = self.poller.serving()
        if self.proxy is not None and release:
            log.info("envoy.fast_start", release=release)
            self._start_proxy(self.proxy)
        failures = 0
        while not stop.is_set():
            step = self.poller.poll_once()
            failures = failures + 1 if step.result == "error" else 0
            self._keep_proxy_running()
            delay = next_delay(self.interval, self.jitter, failures, self.backoff_max, self.rand())
            self._wait(stop, delay)

    def _keep_proxy_running(self) -> None:
        if self.proxy is None:
            return
        if self.proxy.started():
            self._guarded(self.proxy.supervise)
        elif self.poller.serving():
            self._start_proxy(self.proxy)
        elif not self._said_waiting:
            log.info("envoy.waiting", detail="no release on disk yet; starts with the first")
            self._said_waiting = True

    def _start_proxy(self, proxy: Proxy) -> None:
        """Start the proxy on the release on disk; if it refuses it, that release is rejected."""
        release = self.poller.serving()
        try:
            verdict = proxy.start(self.ready_timeout)
        except EnvoyError as err:
            log.error("envoy.start_failed", error=str(err))
            self.poller.note_error(str(err))
            return
        if verdict == "rejected" and release:
            reason = proxy.rejection_reason()
            log.error("release.rejected", version=release, error=reason, at="envoy start")
            self.poller.note_rejected(release, reason)

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run a proxy action; a failure is logged and retried next poll (files stay current)."""
        try:
            action()
        except EnvoyError as err:
            log.error("envoy.start_failed", error=str(err))
            self.poller.note_error(str(err))

    def _wait(self, stop: StopSignal, delay: float) -> None:
        deadline = self.clock() + delay
        while not stop.is_set():
            left = deadline - self.clock()
            if left <= 0:
                return
            stop.wait(min(left, SUPERVISE_EVERY))
            if self.proxy is not None and self.proxy.started():
                self._guarded(self.proxy.supervise)
