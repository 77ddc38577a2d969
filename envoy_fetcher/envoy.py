"""Envoy: the bootstrap for a node, a supervised child process, and update confirmation.

Envoy reads the node's LDS and CDS from ``current/`` with ``watched_directory`` on the config
dir: when ``current`` is renamed into place, Envoy reloads both files without a restart. The
admin API (127.0.0.1 only) tells whether it accepted them (update_success / update_rejected).

The fetcher sees Envoy only as a ``Proxy``; ``EnvoyProcess`` is the real one. Its child process,
admin API, clock and sleep are injected, so restart backoff, drain and confirmation run in unit
tests without a binary.
"""

from __future__ import annotations

import ctypes
import json
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from envoy_fetcher.errors import EnvoyError
from envoy_fetcher.release import write_atomic
from shared.logs import get_logger
from shared.models import CDS_FILE, LDS_FILE

log = get_logger(__name__)

COUNTERS = (
    "listener_manager.lds.update_success",
    "listener_manager.lds.update_rejected",
    "cluster_manager.cds.update_success",
    "cluster_manager.cds.update_rejected",
)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
BACKOFF_CAP = 30.0  # longest wait between restarts of a dying Envoy

# What Envoy said about a swap; "unconfirmed" when no Envoy was running to ask.
Verdict = Literal["accepted", "rejected", "timeout", "unconfirmed"]


class Proxy(Protocol):
    """What the fetcher needs from the proxy it feeds: run it and confirm each swap."""

    def started(self) -> bool:
        """Whether ``start`` ever succeeded (then ``supervise`` keeps it running)."""

    def running(self) -> bool: ...

    def start(self, ready_timeout: float) -> None:
        """Start and wait (at most ``ready_timeout``) until it is ready; EnvoyError if it can't."""

    def supervise(self) -> None:
        """Restart the proxy if it exited (with backoff)."""

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Run ``swap`` (moving ``current``) and say whether the proxy took the new files."""

    def confirm_start(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Run ``swap``, start the proxy on it, and say whether it took the files at boot."""

    def stop(self, drain_seconds: float) -> int | None:
        """Drain for ``drain_seconds``, stop, and return the exit code (None: never started)."""


def node_cluster(node: str) -> str:
    """Envoy's node.cluster: the node id without its color (``ns/service`` or ``ns/gateway``)."""
    parts = node.split("/")
    return "/".join(parts[:2])


def bootstrap(node: str, config_dir: Path, admin_port: int) -> dict[str, Any]:
    """The bootstrap that makes Envoy follow ``config_dir/current``."""

    def source(name: str) -> dict[str, Any]:
        return {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": str(config_dir / "current" / name),
                "watched_directory": {"path": str(config_dir)},
            },
        }

    return {
        "node": {"id": node, "cluster": node_cluster(node)},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "dynamic_resources": {"lds_config": source(LDS_FILE), "cds_config": source(CDS_FILE)},
    }


def write_bootstrap(node: str, config_dir: Path, admin_port: int) -> Path:
    path = config_dir / "bootstrap.json"
    write_atomic(path, json.dumps(bootstrap(node, config_dir, admin_port), indent=1).encode())
    return path


class Admin(Protocol):
    """The parts of Envoy's admin API the fetcher uses."""

    def counters(self) -> dict[str, int]: ...
    def ready(self) -> bool: ...
    def drain(self) -> None: ...


class AdminClient:
    """The Envoy admin API on 127.0.0.1."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def _request(self, path: str, method: str = "GET") -> str:
        req = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(req, timeout=self.timeout) as response:  # noqa: S310
            return str(response.read().decode())

    def counters(self) -> dict[str, int]:
        """The LDS, CDS and per-cluster (EDS) update counters (missing LDS/CDS ones are 0)."""
        pattern = (
            r"^(listener_manager\.lds|cluster_manager\.cds|cluster\..+)\.update_(success|rejected)$"
        )
        text = self._request("/stats?filter=" + urllib.parse.quote(pattern))
        return parse_counters(text)

    def ready(self) -> bool:
        try:
            return self._request("/ready").strip() == "LIVE"
        except (OSError, urllib.error.URLError):
            return False

    def drain(self) -> None:
        """Fail health checks and drain listeners gracefully (best effort)."""
        for path in ("/healthcheck/fail", "/drain_listeners?graceful"):
            try:
                self._request(path, method="POST")
            except (OSError, urllib.error.URLError) as err:
                log.warning("envoy.drain_failed", path=path, error=str(err))


def _is_update_counter(name: str) -> bool:
    return name in COUNTERS or (
        name.startswith("cluster.") and name.endswith((".update_success", ".update_rejected"))
    )


def parse_counters(text: str) -> dict[str, int]:
    """Update counters from ``/stats`` text (``name: value`` lines); LDS/CDS default to 0.

    Besides LDS and CDS, every cluster's ``cluster.<name>.update_success|rejected``: a cluster
    fed by a file-based EDS resource reports its endpoint file there.
    """
    values = dict.fromkeys(COUNTERS, 0)
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if _is_update_counter(name) and value.strip().isdigit():
            values[name] = int(value)
    return values


def judge(before: dict[str, int], now: dict[str, int]) -> Verdict | None:
    """Rejected if any rejected counter moved (an endpoint file included); accepted once the LDS
    and CDS success counters moved and so did every EDS cluster that had taken an update before
    (a swap re-reads every watched file; STATIC clusters never count an update)."""
    if any(v > before.get(c, 0) for c, v in now.items() if c.endswith("rejected")):
        return "rejected"
    moved = [
        now[c] > before[c]
        for c in before
        if c.endswith("success") and c in now and (c in COUNTERS or before[c] > 0)
    ]
    return "accepted" if all(moved) else None


def await_verdict(
    admin: Admin,
    before: dict[str, int],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Wait until Envoy took both files of a swap (success) or rejected either."""
    deadline = clock() + timeout
    while clock() < deadline:
        try:
            verdict = judge(before, admin.counters())
        except (OSError, urllib.error.URLError):
            sleep(0.1)
            continue
        if verdict is not None:
            return verdict
        sleep(0.05)
    return "timeout"


@dataclass
class EnvoyCommand:
    """How to start Envoy for a node."""

    binary: str
    bootstrap: Path
    log_level: str = "info"
    extra_args: str = ""

    def argv(self) -> list[str]:
        return [
            self.binary,
            "-c",
            str(self.bootstrap),
            "--log-level",
            self.log_level,
            "--disable-hot-restart",
            *shlex.split(self.extra_args),
        ]


class Child(Protocol):
    """The parts of a child process (``subprocess.Popen``) supervision uses."""

    @property
    def pid(self) -> int: ...
    def poll(self) -> int | None: ...
    def send_signal(self, sig: int, /) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM Envoy if the fetcher dies (no orphaned proxies)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux/glibc: the container's end still stops Envoy


def spawn_child(argv: list[str]) -> Child:
    """Start ``argv`` as a child that gets SIGTERM when this process dies."""
    return subprocess.Popen(argv, preexec_fn=_die_with_parent)


def restart_delay(restarts: int) -> float:
    """Seconds before the next restart after ``restarts`` exits: 1 s doubling to 30 s."""
    return min(BACKOFF_CAP, 2.0 ** min(restarts - 1, 5))


class EnvoyProcess:
    """A supervised Envoy child: start, restart with backoff when it dies, drain and stop."""

    def __init__(
        self,
        command: EnvoyCommand,
        admin: Admin,
        spawn: Callable[[list[str]], Child] = spawn_child,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.command = command
        self.admin = admin
        self.spawn = spawn
        self.clock = clock
        self.sleep = sleep
        self.proc: Child | None = None
        self.restarts = 0
        self._next_start = 0.0

    def started(self) -> bool:
        return self.proc is not None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready_timeout: float) -> None:
        """Start Envoy and wait until its admin API says LIVE; EnvoyError if it cannot run."""
        self._spawn()
        self.wait_ready(ready_timeout)

    def _spawn(self) -> None:
        argv = self.command.argv()
        try:
            self.proc = self.spawn(argv)
        except OSError as err:
            raise EnvoyError(f"cannot start envoy {self.command.binary!r}: {err}") from err
        log.info("envoy.started", pid=self.proc.pid, argv=" ".join(argv))

    def wait_ready(self, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while self.clock() < deadline and self.running():
            if self.admin.ready():
                return True
            self.sleep(0.05)
        return False

    def supervise(self) -> None:
        """Restart Envoy if it exited, at most once per backoff step (1 s doubling to 30 s)."""
        if self.proc is None or self.clock() < self._next_start:
            return
        code = self.proc.poll()
        if code is None:
            return
        self.restarts += 1
        delay = restart_delay(self.restarts)
        self._next_start = self.clock() + delay
        log.error("envoy.exited", code=code, restarts=self.restarts, next_delay=delay)
        self._spawn()

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Swap, then read the admin counters until Envoy accepts or rejects (or ``timeout``)."""
        if not self.running():
            swap()
            return "unconfirmed"
        before = self.admin.counters()
        swap()
        return await_verdict(self.admin, before, timeout, self.clock, self.sleep)

    def confirm_start(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Swap, start Envoy, and judge its first LDS/CDS load: a fresh Envoy's counters start at
        zero, so any rejected count means it refused the files it booted with (a listener that
        cannot bind, an invalid resource), which would otherwise leave it silently dark."""
        swap()
        self.start(timeout)
        return await_verdict(
            self.admin, dict.fromkeys(COUNTERS, 0), timeout, self.clock, self.sleep
        )

    def stop(self, drain_seconds: float) -> int | None:
        """Drain gracefully, then SIGTERM (SIGKILL after 10 s). Returns Envoy's exit code."""
        if self.proc is None:
            return None
        if self.running() and drain_seconds > 0:
            self.admin.drain()
            self.sleep(drain_seconds)
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        log.info("envoy.stopped", code=code)
        return code
