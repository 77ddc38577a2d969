"""Envoy: the bootstrap for a node, a supervised child process, and update confirmation.

Envoy reads the node's LDS and CDS from ``current/`` with ``watched_directory`` on the config
dir: when ``current`` is renamed into place, Envoy reloads both files without a restart. The
admin API (127.0.0.1 only) tells whether it accepted them (update_success / update_rejected).

The fetcher sees Envoy only as a ``Proxy``; ``EnvoyProcess`` is the real one. Its child process,
admin API, clock and sleep are injected, so restart backoff, drain and confirmation run in unit
tests without a binary.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from envoy_fetcher.errors import EnvoyError
from envoy_fetcher.inotify import abort_reason, aborted_for_inotify
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
BIND_FAILURES = "listener_manager.listener_create_failure"  # a listener that could not bind
CANNOT_BIND = re.compile(r"cannot bind '([^']+)'")
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
BACKOFF_CAP = 30.0  # longest wait between restarts of a dying Envoy

# A listener's port in lds.yaml as published: a literal number (a peer listener's), or the
# ${NJ_LISTENER_PORT} placeholder (the node's own listener), in block or flow YAML or JSON.
PORT_VALUE = re.compile(
    r"""["']?port_value["']?\s*:\s*["']?(\$\{NJ_LISTENER_PORT\}|[0-9]{1,5}(?![0-9]))"""
)
LISTENER_NAME = re.compile(r"""\bname["']?\s*:\s*["']?([^"'\s,}]+)""")
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"

# What Envoy said about a swap; "unconfirmed" when no Envoy was running to ask.
Verdict = Literal["accepted", "rejected", "timeout", "unconfirmed"]
REJECTED_REASON = "envoy rejected the listeners or clusters (update_rejected counter)"

# Envoy's application log as one JSON object per line on stderr, the fields nightjar's own lines
# use (ts, level, logger, event) plus the message; %j escapes it for JSON (newlines included).
JSON_LOG_FORMAT = (
    '{"ts":"%Y-%m-%dT%T.%e%z","level":"%l","logger":"envoy.%n","event":"envoy.log",'
    '"message":"%j","source":"%s:%#","thread":%t}'
)


class Proxy(Protocol):
    """What the fetcher needs from the proxy it feeds: run it and confirm each swap."""

    def started(self) -> bool:
        """Whether ``start`` ever succeeded (then ``supervise`` keeps it running)."""

    def running(self) -> bool: ...

    def start(self, ready_timeout: float) -> Verdict:
        """Start, wait (at most ``ready_timeout``) until ready and say whether it took the files
        ``current`` points to; EnvoyError if it cannot run."""

    def supervise(self) -> None:
        """Restart the proxy if it exited (with backoff)."""

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Run ``swap`` (moving ``current``) and say whether the proxy took the new files; a
        proxy never started is started on them (the first release is confirmed too)."""

    def rejection_reason(self) -> str:
        """Why the last ``rejected`` verdict was given, in one sentence (empty before one)."""

    def stop(self, drain_seconds: float) -> int | None:
        """Drain for ``drain_seconds``, stop, and return the exit code (None: never started)."""


def port_conflicts(lds: str, listener_port: int, admin_port: int) -> list[str]:
    """Why the listeners of a published ``lds.yaml`` cannot all bind in this task: a literal
    port (a ``PEERS`` listener) equal to this task's admin port, or equal to its listener
    port while the file also binds ``${NJ_LISTENER_PORT}``. Envoy would refuse either (the
    address is taken); said here first, with the setting to change."""
    found = []
    main = any(m.group(1).startswith("$") for m in PORT_VALUE.finditer(lds))
    taken = {admin_port: "NJ_ADMIN_PORT"} | ({listener_port: "NJ_LISTENER_PORT"} if main else {})
    for chunk in lds.split(LISTENER_TYPE)[1:] or [lds]:
        name = LISTENER_NAME.search(chunk)
        for match in PORT_VALUE.finditer(chunk):
            port = match.group(1)
            if port.isdigit() and int(port) in taken:
                who = f"listener {name.group(1)!r}" if name else "a listener"
                found.append(
                    f"lds.yaml puts {who} on port {port}, which is this task's"
                    f" {taken[int(port)]}: change that PEERS port in Cloud Map or"
                    f" {taken[int(port)]}"
                )
    return found


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
    def listener_errors(self) -> list[str]:
        """Envoy's error details for listeners it failed to add (config_dump error_state)."""


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
            r"^((listener_manager\.lds|cluster_manager\.cds|cluster\..+)\.update_(success|rejected)"
            r"|listener_manager\.listener_create_failure)$"
        )
        text = self._request("/stats?filter=" + urllib.parse.quote(pattern))
        return parse_counters(text)

    def listener_errors(self) -> list[str]:
        dump = json.loads(self._request("/config_dump?resource=dynamic_listeners"))
        return [
            str(c["error_state"].get("details", ""))
            for c in dump.get("configs", [])
            if isinstance(c, dict) and isinstance(c.get("error_state"), dict)
        ]

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
    return (
        name in COUNTERS
        or name == BIND_FAILURES
        or (name.startswith("cluster.") and name.endswith((".update_success", ".update_rejected")))
    )


def parse_counters(text: str) -> dict[str, int]:
    """Update counters from ``/stats`` text (``name: value`` lines); LDS/CDS default to 0.

    Besides LDS and CDS, every cluster's ``cluster.<name>.update_success|rejected``: a cluster
    fed by a file-based EDS resource reports its endpoint file there.
    """
    values = dict.fromkeys((*COUNTERS, BIND_FAILURES), 0)
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if _is_update_counter(name) and value.strip().isdigit():
            values[name] = int(value)
    return values


def judge(before: dict[str, int], now: dict[str, int]) -> Verdict | None:
    """Rejected if any rejected counter moved (an endpoint file included); accepted once the LDS
    and CDS success counters moved and so did every EDS cluster that had taken an update before
    (a swap re-reads every watched file; STATIC clusters never count an update). A listener
    that failed to bind (``listener_create_failure``) is a rejection too."""
    if any(
        v > before.get(c, 0) for c, v in now.items() if c.endswith("rejected") or c == BIND_FAILURES
    ):
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
    alive: Callable[[], bool] = lambda: True,
) -> Verdict:
    """Wait until Envoy took both files of a swap (success) or rejected either; a "timeout"
    as soon as ``alive`` says Envoy exited (no verdict will come)."""
    deadline = clock() + timeout
    while clock() < deadline and alive():
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
    log_format: str = JSON_LOG_FORMAT  # "" keeps Envoy's text format
    drain_time: int | None = None  # --drain-time-s; None keeps Envoy's default (600 s)

    def argv(self) -> list[str]:
        fmt = ["--log-format", self.log_format] if self.log_format else []
        drain = [] if self.drain_time is None else ["--drain-time-s", str(self.drain_time)]
        return [
            self.binary,
            "-c",
            str(self.bootstrap),
            "--log-level",
            self.log_level,
            *fmt,
            "--disable-hot-restart",
            *drain,
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
    def recent_output(self) -> str:
        """Its last lines on stderr (what it said before it exited)."""


def _die_with_parent() -> Callable[[], None]:
    """What the child runs before exec: ask Linux to SIGTERM Envoy if the fetcher dies (no
    orphaned proxies). ctypes is loaded here, in the parent, only by a fetcher that spawns."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return lambda: None  # not Linux/glibc: the container's end still stops Envoy

    def in_child() -> None:
        try:
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return in_child


class EnvoyChild:
    """Envoy as a child process whose stderr passes through to ours line by line (one write
    per line), keeping the last lines: why it exited, when it says so before it dies."""

    def __init__(self, argv: list[str], keep: int = 60) -> None:
        self.popen = subprocess.Popen(argv, preexec_fn=_die_with_parent(), stderr=subprocess.PIPE)
        self._tail: deque[bytes] = deque(maxlen=keep)
        self._relay = threading.Thread(target=self._pass_through, name="envoy-stderr", daemon=True)
        self._relay.start()

    def _pass_through(self) -> None:
        stream = self.popen.stderr
        assert stream is not None
        with stream:
            for line in stream:
                self._tail.append(line)
                _write_all(2, line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def send_signal(self, sig: int, /) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        self.popen.kill()

    def recent_output(self) -> str:
        if self.popen.poll() is not None:
            self._relay.join(timeout=2.0)  # what it wrote before exiting is still in the pipe
        return b"".join(self._tail).decode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd``; a closed stderr drops it (Envoy must never block on a pipe)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError:
            return


def spawn_child(argv: list[str]) -> Child:
    """Start ``argv`` as a child that gets SIGTERM when this process dies."""
    return EnvoyChild(argv)


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
        *,
        listener: str = "",
        on_restart: Callable[[], None] = lambda: None,
        inotify_limit: int | None = None,
    ) -> None:
        self.command = command
        self.inotify_limit = inotify_limit
        self.admin = admin
        self.listener = listener
        self.on_restart = on_restart
        self._rejection = ""
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

    def start(self, ready_timeout: float) -> Verdict:
        """Start Envoy, wait until LIVE, then judge its first load of ``current`` (EnvoyError if
        it cannot run): rejected when a listener failed to bind or a file was refused."""
        deadline = self.clock() + ready_timeout
        self._spawn()
        if not self.wait_ready(ready_timeout):
            return self._died("timeout")
        nothing = parse_counters("")
        verdict = await_verdict(
            self.admin, nothing, max(0.5, deadline - self.clock()), self.clock, self.sleep
        )
        return self._explain(verdict, nothing)

    def rejection_reason(self) -> str:
        return self._rejection

    def _explain(self, verdict: Verdict, before: dict[str, int]) -> Verdict:
        """Remember why a rejected verdict was given (a bind failure names the listener)."""
        if verdict != "rejected":
            return verdict
        self._rejection = REJECTED_REASON
        try:
            now = self.admin.counters()
        except (OSError, urllib.error.URLError):
            return verdict
        if now.get(BIND_FAILURES, 0) > before.get(BIND_FAILURES, 0):
            where = f"port {self._unbound_address()}"
            self._rejection = (
                f"envoy cannot bind {where} ({BIND_FAILURES} counted): another process is "
                "using it; free the port or change NJ_LISTENER_PORT"
            )
        return verdict

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

    def _unbound_address(self) -> str:
        """The address Envoy says it could not bind, else the node's configured listener."""
        try:
            details = self.admin.listener_errors()
        except (OSError, urllib.error.URLError, ValueError):
            details = []
        found = [m.group(1) for d in details if (m := CANNOT_BIND.search(d))]
        return found[-1] if found else (self.listener or "of its listener")

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
        self.on_restart()
        self._spawn()

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        """Swap, then read the admin counters until Envoy accepts or rejects (or ``timeout``)."""
        if self.proc is None:  # the first release: Envoy starts on it, and that is confirmed
            swap()
            return self.start(timeout)
        if not self.running():
            swap()
            return "unconfirmed"
        before = self.admin.counters()
        swap()
        verdict = await_verdict(self.admin, before, timeout, self.clock, self.sleep, self.running)
        if verdict == "timeout":
            return self._died(verdict)
        return self._explain(verdict, before)

    def _died(self, verdict: Verdict) -> Verdict:
        """Envoy exited while loading the files: rejected when it said inotify ran out (the
        version needs more file subscriptions than the uid may have), else ``verdict``."""
        if self.proc is None or self.running():
            return verdict
        if not aborted_for_inotify(self.proc.recent_output()):
            return verdict
        self._rejection = abort_reason(self.inotify_limit)
        log.error("envoy.inotify_exhausted", code=self.proc.poll(), limit=self.inotify_limit)
        return "rejected"

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
