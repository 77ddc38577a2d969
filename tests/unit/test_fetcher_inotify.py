"""Envoy's inotify budget: counting a version's file subscriptions, the limit warning, and
recognising Envoy's abort when the budget ran out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envoy_fetcher.envoy import EnvoyProcess
from envoy_fetcher.inotify import (
    abort_reason,
    aborted_for_inotify,
    count_subscriptions,
    over_limit,
    read_instance_limit,
)
from tests.fakes import FakeAdmin, FakeClock, counters
from tests.unit.test_fetcher_envoy import COMMAND, Spawner

EDS_CLUSTER = """\
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: "{name}"
  type: EDS
  eds_cluster_config:
    eds_config:
      path_config_source:
        path: "/cfg/current/eds-{name}.yaml"
        watched_directory: {{path: "/cfg"}}
"""
STATIC_CLUSTER = '- {name: "admin", type: STATIC, load_assignment: {cluster_name: "admin"}}\n'
# Envoy 1.40's line (JSON log format) when inotify_init1 fails, as measured (docs/fetcher.md).
ENVOY_ABORT = (
    '{"level":"critical","logger":"envoy.assert","event":"envoy.log","message":"assert failure:'
    " inotify_fd_ >= 0. Details: Consider increasing value of fs.inotify.max_user_watches"
    ' and/or fs.inotify.max_user_instances via sysctl"}\n'
)


def node_files(eds_clusters: int, json_clusters: int = 0) -> dict[str, bytes]:
    cds = "resources:\n" + "".join(EDS_CLUSTER.format(name=f"c{i}") for i in range(eds_clusters))
    flow = [
        {"name": f"j{i}", "eds_cluster_config": {"eds_config": {"path_config_source": {}}}}
        for i in range(json_clusters)
    ]
    files = {"cds.yaml": (cds + STATIC_CLUSTER).encode(), "lds.yaml": b"resources: []\n"}
    files |= {f"eds-c{i}.yaml": b'{"resources": []}' for i in range(eds_clusters)}
    if flow:
        files["extra.json"] = json.dumps({"resources": flow}).encode()
    return files


@pytest.mark.parametrize(
    ("eds", "json_eds", "expected"), [(0, 0, 2), (1, 0, 3), (126, 0, 128), (3, 2, 7)]
)
def test_a_version_needs_two_instances_plus_one_per_file_subscription(
    eds: int, json_eds: int, expected: int
) -> None:
    """LDS + CDS of the bootstrap, plus each path_config_source (YAML or JSON) in the files;
    endpoint files themselves and STATIC clusters need none."""
    assert expected == count_subscriptions(node_files(eds, json_eds))


def test_over_the_limit_the_warning_names_count_limit_and_remedies() -> None:
    """129 needed with a limit of 128: the reason says both numbers, the sysctl and the
    inline-endpoints override; at or under the limit, or with no known limit, nothing."""
    reason = over_limit(129, 128)
    assert reason is not None
    for part in ("needs 129", "max_user_instances is 128", "sysctl", "docs/templates.md"):
        assert part in reason
    assert [over_limit(128, 128), over_limit(3, 128), over_limit(5000, None)] == [None] * 3


def test_the_limit_is_read_from_proc_or_unknown(tmp_path: Path) -> None:
    """The sysctl's file holds one number; a missing or odd file means "unknown" (None)."""
    (tmp_path / "limit").write_text("128\n")
    (tmp_path / "odd").write_text("many\n")
    found = [read_instance_limit(tmp_path / n) for n in ("limit", "odd", "missing")]
    assert [128, None, None] == found


def test_envoys_abort_line_is_recognised_and_other_exits_are_not() -> None:
    """The assert Envoy logs when inotify_init1 fails is recognised in its last lines."""
    assert aborted_for_inotify("starting\n" + ENVOY_ABORT + "Caught Aborted\n")
    assert not aborted_for_inotify("error initializing config: unknown field\n")


def test_envoy_aborting_on_a_swap_for_want_of_inotify_is_a_rejection_naming_the_cause() -> None:
    """Envoy dies while loading a swap and its last lines are the inotify abort: rejected (so
    the fetcher swaps back), the reason names the limit and the remedies; at once, not after
    the confirm timeout."""
    clock, spawner = FakeClock(), Spawner()
    admin = FakeAdmin([counters(lds_success=1, cds_success=1)])
    proc = EnvoyProcess(COMMAND, admin, spawner, clock.monotonic, clock.sleep, inotify_limit=128)
    proc.start(1.0)

    def swap() -> None:
        admin.answers[:] = [ConnectionRefusedError("envoy is gone")]
        spawner.children[0].output = ENVOY_ABORT
        spawner.children[0].exit(-6)

    started = clock.now
    assert proc.confirm_swap(swap, 15.0) == "rejected"
    assert clock.now - started < 1.0
    assert proc.rejection_reason() == abort_reason(128)
    assert "fs.inotify.max_user_instances = 128" in proc.rejection_reason()


def test_envoy_dying_on_a_swap_for_another_reason_stays_a_timeout() -> None:
    """An exit whose output is not the inotify abort is no verdict ("timeout"), as before."""
    clock, spawner = FakeClock(), Spawner()
    admin = FakeAdmin([counters(lds_success=1, cds_success=1)])
    proc = EnvoyProcess(COMMAND, admin, spawner, clock.monotonic, clock.sleep)
    proc.start(1.0)

    def swap() -> None:
        admin.answers[:] = [ConnectionRefusedError("envoy is gone")]
        spawner.children[0].output = "Caught Segmentation fault\n"
        spawner.children[0].exit(-11)

    assert proc.confirm_swap(swap, 15.0) == "timeout"
