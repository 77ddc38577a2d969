"""Envoy: the bootstrap for a node, a supervised child process, and update confirmation.

Envoy reads the node's LDS and CDS from ``current/`` with ``watched_directory`` on the config
dir: when ``current`` is renamed into place, Envoy reloads both files without a restart. The
admin API (127.0.0.1 only) tells whether it accepted them (update_success / update_rejected).
"""

from __future__ import annotations

import ctypes
import json
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envoy_fetcher.errors import EnvoyError
from envoy_fetcher.release import write_atomic
from shared.logs import get_logger

log = get_logger(__name__)

COUNTERS = (
    "listener_manager.lds.update_success",
    "listener_manager.lds.update_rejected",
    "cluster_manager.cds.update_success",
    "cluster_manager.cds.update_rejected",
)


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
        "dynamic_resources": {"lds_config": source("lds.yaml"), "cds_config": source("cds.yaml")},
    }


def write_bootstrap(node: str, config_dir: Path, admin_port: int) -> Path:
    path = config_dir / "bootstrap.json"
    write_atomic(path, json.dumps(bootstrap(node, config_dir, admin_port), indent=1).encode())
    return path


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
        """The update counters (missing ones are 0)."""
        text = self._request("/stats?filter=^(listener_manager.lds|cluster_manager.cds).update_")
        values = dict.fromkeys(COUNTERS, 0)
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name in values and value.strip().isdigit():
                values[name] = int(value)
        return values

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


Verdict = Literal["accepted", "rejected", "timeout"]


def await_verdict(
    admin: AdminClient,
    before: dict[str, int],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Wait until Envoy took both files of a swap (success) or rejected either."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = admin.counters()
        except (OSError, urllib.error.URLError):
            sleep(0.1)
            continue
        if any(now[c] > before[c] for c in COUNTERS if c.endswith("rejected")):
            return "rejected"
        if all(now[c] > before[c] for c in COUNTERS if c.endswith("success")):
            return "accepted"
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


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM Envoy if the fetcher dies (no orphaned proxies)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux/glibc: the container's end still stops Envoy


class EnvoyProcess:
    """A supervised Envoy child: start, restart with backoff when it dies, drain and stop."""

    def __init__(self, command: EnvoyCommand, admin: AdminClient) -> None:
        self.command = command
        self.admin = admin
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0

    def start(self) -> None:
        """Start Envoy; EnvoyError when the binary cannot be executed."""
        try:
            self.proc = subprocess.Popen(self.command.argv(), preexec_fn=_die_with_parent)
        except OSError as err:
            raise EnvoyError(f"cannot start envoy {self.command.binary!r}: {err}") from err
        log.info("envoy.started", pid=self.proc.pid, argv=" ".join(self.command.argv()))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            if self.admin.ready():
                return True
            time.sleep(0.05)
        return False

    def supervise(self) -> None:
        """Restart Envoy if it exited, at most once per backoff step (1 s doubling to 30 s)."""
        if self.proc is None or self.running() or time.monotonic() < self._next_start:
            return
        code = self.proc.returncode
        self.restarts += 1
        delay = min(30.0, 2.0 ** min(self.restarts - 1, 5))
        self._next_start = time.monotonic() + delay
        log.error("envoy.exited", code=code, restarts=self.restarts, next_delay=delay)
        self.start()

    def stop(self, drain_seconds: float) -> int | None:
        """Drain gracefully, then SIGTERM (SIGKILL after 10 s). Returns Envoy's exit code."""
        if self.proc is None:
            return None
        if self.running() and drain_seconds > 0:
            self.admin.drain()
            time.sleep(drain_seconds)
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        log.info("envoy.stopped", code=code)
        return code
