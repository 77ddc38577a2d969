"""Envoy supervision and swap confirmation, on a fake child, admin API and clock."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from envoy_fetcher.envoy import (
    JSON_LOG_FORMAT,
    EnvoyCommand,
    EnvoyProcess,
    await_verdict,
    bootstrap,
    judge,
    parse_counters,
    port_conflicts,
    restart_delay,
)
from envoy_fetcher.errors import EnvoyError
from shared.models import CDS_FILE, LDS_FILE
from tests.fakes import FakeAdmin, FakeChild, FakeClock, counters

COMMAND = EnvoyCommand("envoy", Path("/cfg/bootstrap.json"), "warning", "--concurrency 1", "")


class Spawner:
    """Hands out fake children (or raises ``error``) and remembers every argv."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.children: list[FakeChild] = []
        self.argvs: list[list[str]] = []

    def __call__(self, argv: list[str]) -> FakeChild:
        self.argvs.append(argv)
        if self.error is not None:
            raise self.error
        self.children.append(FakeChild(pid=100 + len(self.children)))
        return self.children[-1]


def envoy(admin: FakeAdmin | None = None, spawner: Spawner | None = None) -> EnvoyProcess:
    clock = FakeClock()
    return EnvoyProcess(
        COMMAND,
        admin or FakeAdmin([counters()]),
        spawner or Spawner(),
        clock.monotonic,
        clock.sleep,
    )


def test_bootstrap_follows_the_current_link_for_both_files() -> None:
    """LDS and CDS are read from current/ with the config dir watched; admin on loopback."""
    boot = bootstrap("fish.service.local/tuna/blue", Path("/cfg"), 9901)
    assert boot["node"] == {
        "id": "fish.service.local/tuna/blue",
        "cluster": "fish.service.local/tuna",
    }
    lds = boot["dynamic_resources"]["lds_config"]["path_config_source"]
    cds = boot["dynamic_resources"]["cds_config"]["path_config_source"]
    assert (lds["path"], cds["path"]) == (f"/cfg/current/{LDS_FILE}", f"/cfg/current/{CDS_FILE}")
    assert lds["watched_directory"] == {"path": "/cfg"}
    assert boot["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }


def test_command_line_asks_for_json_application_logs_by_default() -> None:
    """The default log format makes each Envoy log line one JSON object (message %j-escaped)."""
    argv = EnvoyCommand("envoy", Path("/b.json")).argv()
    fmt = argv[argv.index("--log-format") + 1]
    assert fmt == JSON_LOG_FORMAT and '"message":"%j"' in fmt
    sample = fmt.replace("%Y-%m-%dT%T.%e%z", "2026").replace("%t", "7")
    for flag in ("%l", "%n", "%j", "%s", "%#"):
        sample = sample.replace(flag, "x")
    assert set(json.loads(sample)) >= {"ts", "level", "logger", "event", "message"}


def test_command_line_disables_hot_restart_and_appends_extra_args() -> None:
    """argv: binary, bootstrap, log level, --disable-hot-restart, then the shell words given."""
    assert COMMAND.argv() == [
        "envoy",
        "-c",
        "/cfg/bootstrap.json",
        "--log-level",
        "warning",
        "--disable-hot-restart",
        "--concurrency",
        "1",
    ]


def test_command_line_sets_the_drain_time_before_extra_args() -> None:
    """A drain time becomes --drain-time-s (Envoy's own default, 600 s, only without one)."""
    command = EnvoyCommand("envoy", Path("/b.json"), "info", "--concurrency 1", "", drain_time=5)
    argv = command.argv()
    assert argv[argv.index("--drain-time-s") :] == ["--drain-time-s", "5", "--concurrency", "1"]


def test_counters_are_parsed_from_stats_text_and_default_to_zero() -> None:
    """Known counters are read, unknown lines and non-numbers ignored, missing ones are 0."""
    text = (
        "listener_manager.lds.update_success: 3\n"
        "cluster_manager.cds.update_rejected: x\n"
        "server.live: 1\n"
    )
    assert parse_counters(text) == counters(lds_success=3)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([counters(lds_success=1), counters(lds_success=1, cds_success=1)], "accepted"),
        ([counters(lds_success=1, cds_rejected=1)], "rejected"),
        ([OSError("refused"), counters(lds_rejected=1)], "rejected"),
        ([counters(lds_success=1)], "timeout"),
    ],
)
def test_verdict_needs_both_files_accepted_or_either_rejected(
    answers: list[dict[str, int] | OSError], expected: str
) -> None:
    """Accepted once both success counters moved; rejected as soon as one rejected moved;
    an unreachable admin API is asked again; nothing decisive before the deadline: timeout."""
    clock = FakeClock()
    verdict = await_verdict(FakeAdmin(answers), counters(), 2.0, clock.monotonic, clock.sleep)
    assert verdict == expected
    assert clock.now <= 2.1


EDS = "cluster.tuna/blue.update_success"
EDS_REJECTED = "cluster.tuna/blue.update_rejected"
STATIC = "cluster.static-one.update_success"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ({**counters(lds_success=1, cds_success=1), EDS: 3, STATIC: 0}, "accepted"),
        ({**counters(lds_success=1, cds_success=1), EDS: 2, STATIC: 0}, None),
        ({**counters(lds_success=1, cds_success=1), EDS: 3, EDS_REJECTED: 1}, "rejected"),
        ({**counters(), "cluster.new/one.update_rejected": 1}, "rejected"),
        (counters(lds_success=1, cds_success=1), "accepted"),  # the EDS cluster was removed
    ],
)
def test_endpoint_files_count_in_the_verdict(now: dict[str, int], expected: str | None) -> None:
    """An EDS cluster that took updates before must take this one; any rejected endpoint file
    (even of a cluster new in the swap) rejects it; STATIC clusters, never updated, do not count."""
    before = {**counters(), EDS: 2, STATIC: 0}
    assert judge(before, now) == expected


def test_cluster_update_counters_are_parsed() -> None:
    """Per-cluster update counters are read from /stats next to the LDS/CDS ones."""
    text = f"{EDS}: 7\n{EDS_REJECTED}: 1\ncluster.tuna/blue.upstream_rq_total: 9\n"
    assert parse_counters(text) == {**counters(), EDS: 7, EDS_REJECTED: 1}


def test_start_spawns_envoy_and_waits_until_ready() -> None:
    """start runs the command and returns once the admin API says ready."""
    spawner, admin = Spawner(), FakeAdmin([counters()], ready_after=3)
    proc = envoy(admin, spawner)
    proc.start(5.0)
    assert spawner.argvs == [COMMAND.argv()]
    assert proc.started() and proc.running() and admin.ready_calls == 4


def test_a_binary_that_cannot_run_is_an_envoy_error() -> None:
    """An OSError from exec becomes EnvoyError naming the binary; nothing counts as started."""
    proc = envoy(spawner=Spawner(OSError("no such file")))
    with pytest.raises(EnvoyError, match="cannot start envoy 'envoy'"):
        proc.start(1.0)
    assert not proc.started()


def test_a_dead_envoy_is_restarted_with_doubling_backoff() -> None:
    """Exits are restarted at once, then not before 1, 2, 4 ... s (capped at 30 s)."""
    spawner = Spawner()
    clock = FakeClock()
    proc = EnvoyProcess(COMMAND, FakeAdmin([counters()]), spawner, clock.monotonic, clock.sleep)
    proc.start(1.0)
    proc.supervise()
    assert len(spawner.children) == 1  # running: nothing to do
    spawner.children[-1].exit(1)
    proc.supervise()
    assert (len(spawner.children), proc.restarts) == (2, 1)
    spawner.children[-1].exit(1)
    clock.now += 0.5
    proc.supervise()
    assert len(spawner.children) == 2  # still inside the 1 s backoff
    clock.now += 0.6
    proc.supervise()
    assert (len(spawner.children), proc.restarts) == (3, 2)
    assert [restart_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_stop_drains_then_terminates_and_returns_the_exit_code() -> None:
    """A running Envoy is told to drain, given drain_seconds, then SIGTERM."""
    admin, spawner, clock = FakeAdmin([counters()]), Spawner(), FakeClock()
    proc = EnvoyProcess(COMMAND, admin, spawner, clock.monotonic, clock.sleep)
    proc.start(1.0)
    assert proc.stop(2.5) == -signal.SIGTERM
    assert admin.drains == 1 and clock.sleeps[-1] == 2.5
    assert spawner.children[0].signals == [signal.SIGTERM]


def test_stop_kills_an_envoy_that_ignores_sigterm() -> None:
    """No exit within the stop timeout after SIGTERM: SIGKILL; without drain time, no drain."""
    admin, spawner = FakeAdmin([counters()]), Spawner()
    proc = envoy(admin, spawner)
    proc.start(1.0)
    spawner.children[0].hangs = True
    assert proc.stop(0) == -9
    assert spawner.children[0].killed and admin.drains == 0


def test_stop_without_a_start_does_nothing() -> None:
    """A never-started Envoy has no exit code."""
    assert envoy().stop(1.0) is None


def test_the_first_swap_starts_envoy_and_is_confirmed() -> None:
    """Never started: swap, start Envoy on the files, and judge its first load of them."""
    swaps: list[str] = []
    admin = FakeAdmin([counters(lds_success=1, cds_success=1)])
    proc = envoy(admin)
    assert proc.confirm_swap(lambda: swaps.append("swapped"), 1.0) == "accepted"
    assert swaps == ["swapped"] and proc.running()


def test_a_listener_that_cannot_bind_at_start_is_a_rejection_naming_the_port() -> None:
    """Envoy LIVE but its listener failed to bind: rejected, the reason names the port."""
    clock = FakeClock()
    admin = FakeAdmin([counters(lds_rejected=1, cds_success=1, bind_failures=1)])
    proc = EnvoyProcess(
        COMMAND, admin, Spawner(), clock.monotonic, clock.sleep, listener="127.0.0.1:15001"
    )
    assert proc.start(1.0) == "rejected"
    assert "cannot bind port 127.0.0.1:15001" in proc.rejection_reason()
    assert "listener_create_failure" in proc.rejection_reason()
    admin.errors = ["cannot bind '127.0.0.1:9999': Address already in use"]
    assert proc.start(1.0) == "rejected"
    assert "cannot bind port 127.0.0.1:9999" in proc.rejection_reason()  # what Envoy says


def test_a_bind_failure_during_a_swap_is_a_rejection() -> None:
    """listener_create_failure moving after a swap rejects it even if LDS counted a success."""
    before = counters(lds_success=1, cds_success=1)
    assert judge(before, counters(lds_success=2, cds_success=2, bind_failures=1)) == "rejected"


def test_swap_with_a_dead_envoy_is_unconfirmed() -> None:
    """Started once but dead now (awaiting restart): the swap happens, nobody to ask."""
    swaps: list[str] = []
    spawner = Spawner()
    proc = envoy(FakeAdmin([counters(lds_success=1, cds_success=1)]), spawner)
    proc.start(1.0)
    spawner.children[0].exit(1)
    assert proc.confirm_swap(lambda: swaps.append("swapped"), 1.0) == "unconfirmed"
    assert swaps == ["swapped"]


def test_envoy_restarts_are_reported() -> None:
    """Each restart of a dead Envoy calls on_restart (the restart metric)."""
    restarts: list[int] = []
    clock, spawner = FakeClock(), Spawner()
    proc = EnvoyProcess(
        COMMAND,
        FakeAdmin([counters(lds_success=1, cds_success=1)]),
        spawner,
        clock.monotonic,
        clock.sleep,
        on_restart=lambda: restarts.append(1),
    )
    proc.start(1.0)
    spawner.children[0].exit(1)
    proc.supervise()
    assert restarts == [1]


def test_swap_is_judged_against_the_counters_read_before_it() -> None:
    """Counters are read before the swap; their movement after it is the verdict."""
    admin = FakeAdmin([counters(lds_success=4, cds_success=4)])
    proc = envoy(admin)
    proc.start(1.0)

    def swap() -> None:
        admin.answers[:] = [counters(lds_success=5, cds_success=5)]

    assert proc.confirm_swap(swap, 1.0) == "accepted"


MAIN = 'name: "egress"\n  address: {socket_address: {port_value: ${NJ_LISTENER_PORT}}}\n'
PEER = '- "@type": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: "peer:b"\n'


@pytest.mark.parametrize(
    ("lds", "found"),
    [
        (MAIN + PEER + "  port_value: 9101\n", []),
        (MAIN + PEER + "  port_value: 8080\n", ["'peer:b' on port 8080", "NJ_LISTENER_PORT"]),
        (
            MAIN + PEER + "  address: {port_value: 9901}\n",
            ["'peer:b' on port 9901", "NJ_ADMIN_PORT"],
        ),
        ('{"name": "x", "port_value": 9901}', ["listener 'x' on port 9901"]),
        ('{"name": "x", "port_value": 8080}', []),  # no ${NJ_LISTENER_PORT}: nothing to clash
        (MAIN + PEER + "  port_value: 80801\n", []),
    ],
)
def test_port_conflicts_name_the_listener_the_port_and_the_setting(
    lds: str, found: list[str]
) -> None:
    """A literal listener port equal to NJ_ADMIN_PORT, or to NJ_LISTENER_PORT while the file
    binds ${NJ_LISTENER_PORT} too, is a conflict (block, flow or JSON); nothing else is."""
    conflicts = port_conflicts(lds, listener_port=8080, admin_port=9901)
    assert len(conflicts) == (1 if found else 0)
    assert all(part in conflicts[0] for part in found)
