"""An Envoy the fetcher does not run: another container of the task, sharing the config volume.

``nightjar-fetcher run --no-envoy --envoy-admin HOST:PORT`` manages the files and confirms each
swap through that Envoy's admin API, the same counters a supervised Envoy is judged by. The
fetcher never starts, restarts or stops it: its own container does (docs/fetcher.md).
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable

from envoy_fetcher.envoy import REJECTED_REASON, Admin, Verdict, await_verdict
from shared.logs import get_logger

log = get_logger(__name__)


class ExternalEnvoy:
    """The ``Proxy`` of an Envoy in another container: confirm swaps, nothing else."""

    def __init__(
        self,
        admin: Admin,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.admin = admin
        self.clock = clock
        self.sleep = sleep

    def started(self) -> bool:
        return True  # it is not ours to start: its container runs it

    def running(self) -> bool:
        return self.admin.ready()

    def start(self, ready_timeout: float) -> Verdict:
        """Wait (bounded) until the other Envoy is LIVE; it loads ``current`` on its own."""
        deadline = self.clock() + ready_timeout
        while self.clock() < deadline:
            if self.admin.ready():
                return "accepted"
            self.sleep(0.1)
        return "timeout"

    def supervise(self) -> None:
        """Nothing to do: the other container restarts its Envoy."""

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Swap, then judge the other Envoy's counters; unreachable admin API: unconfirmed."""
        try:
            before = self.admin.counters()
        except (OSError, urllib.error.URLError) as err:
            log.warning("envoy.admin_unreachable", error=str(err))
            swap()
            return "unconfirmed"
        swap()
        return await_verdict(self.admin, before, timeout, self.clock, self.sleep)

    def rejection_reason(self) -> str:
        return REJECTED_REASON

    def stop(self, drain_seconds: float) -> int | None:
        return None  # its container drains and stops it
