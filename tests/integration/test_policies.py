"""Traffic policies as a client sees them: Cloud Map (moto server) -> configurator -> S3 ->
fetcher -> real Envoy -> real loopback backends.

One mesh serves every test (one gateway Envoy): each policy lives on its own service and path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from configurator.mesh import eds_file_name
from sandbox.cloudmap import FISH, CloudMapService, Task, create_namespace, register
from tests.backends import Backend, Behaviour
from tests.mesh_harness import EnvoyNode, client, configurator, moto_endpoint, publish
from tests.waiting import wait_for

BUCKET = "policies"
GATEWAY = f"{FISH}/gateway"

# Cloud Map service -> (settings beyond SERVICE/COLOR, backends behind it)
SERVICES: dict[str, tuple[dict[str, str], dict[str, Behaviour]]] = {
    "flaky-blue": ({"/flaky": "1", "RETRIES": "2 on=5xx"}, {"flaky": Behaviour(fail_every=2)}),
    "plain-blue": ({"/plain": "1"}, {"plain": Behaviour(fail_every=2)}),
    "slow-blue": ({"/slow": "1", "TIMEOUT": "300ms"}, {"slow": Behaviour(delay=2)}),
    "checked-blue": (
        {"/checked": "1", "HEALTH_CHECK": "/health interval=1s unhealthy=2"},
        {"checked-ok": Behaviour(), "checked-sick": Behaviour(health=500)},
    ),
    "outlier-blue": (
        {"/outlier": "1", "OUTLIER": "5xx=3"},
        {"outlier-ok": Behaviour(), "outlier-bad": Behaviour(status=500)},
    ),
    "limited-blue": (
        {"/limited": "1", "LIMITS": "requests=1 pending=1"},
        {"limited": Behaviour(delay=0.5)},
    ),
    "abort-blue": ({"/abort": "1", "FAULT": "abort=503@100%"}, {"abort": Behaviour()}),
    "delay-blue": ({"/delay": "1", "FAULT": "delay=200ms@100%"}, {"delay": Behaviour()}),
    "rated-blue": ({"/rated": "1", "RATE_LIMIT": "5/s"}, {"rated": Behaviour()}),
    "tuna-blue": ({"/tuna": "100"}, {"tuna-blue": Behaviour()}),
    "tuna-green": (
        {"/tuna": "0", "[header:x-canary=1]/tuna": "1"},
        {"tuna-green": Behaviour()},
    ),
    "eds-blue": (
        {"/eds": "1", "HEALTH_CHECK": "/health interval=1s unhealthy=2"},
        {"eds-ok": Behaviour(), "eds-sick": Behaviour(health=500)},
    ),
}


class PolicyMesh(EnvoyNode):
    """Cloud Map + S3 on a moto server, an in-process configurator, a fetcher running Envoy."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        super().__init__(endpoint, BUCKET, GATEWAY, workdir)
        self.backends: dict[str, Backend] = {}
        self.service_ids: dict[str, str] = {}
        self.cloudmap: Any = client("servicediscovery", endpoint)
        self.configurator = configurator(endpoint, [FISH], BUCKET)

    def register_all(self) -> None:
        ns_id = create_namespace(self.cloudmap)
        for service, (settings, behind) in SERVICES.items():
            name, color = service.rsplit("-", 1)
            tasks = []
            for backend_name, behaviour in behind.items():
                self.backends[backend_name] = backend = Backend(backend_name, behaviour)
                tasks.append(Task("127.0.0.1", str(backend.port)))
            attributes = {"SERVICE": name, "COLOR": color, **settings}
            self.service_ids[service] = register(
                self.cloudmap, ns_id, CloudMapService(service, attributes, tasks)
            )

    def cycle(self) -> str:
        return publish(self.configurator)

    def stop(self) -> None:
        super().stop()
        for backend in self.backends.values():
            backend.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyMesh]:
    with moto_endpoint() as endpoint:
        m = PolicyMesh(endpoint, tmp_path_factory.mktemp("policies"))
        try:
            m.register_all()
            version = m.cycle()
            m.start()
            m.wait_serving(version)
            yield m
        finally:
            m.stop()


def test_retries_mask_a_backend_failing_every_other_request(mesh: PolicyMesh) -> None:
    """RETRIES=2 on=5xx: >= 99 % of 200 requests succeed; without the key about half fail."""
    with_retries = mesh.answers("/flaky", 200)
    without = mesh.answers("/plain", 200)
    assert with_retries["flaky"] >= 198, with_retries
    assert 80 <= without["503"] <= 120, without


def test_timeout_cuts_a_slow_backend_short(mesh: PolicyMesh) -> None:
    """TIMEOUT=300ms against a backend sleeping 2 s: the client gets 504 in under 1 s."""
    status, _, seconds = mesh.get("/slow")
    assert status == 504 and seconds < 1.0, (status, seconds)


def test_active_health_check_stops_traffic_to_a_sick_endpoint(mesh: PolicyMesh) -> None:
    """HEALTH_CHECK=/health interval=1s unhealthy=2: the endpoint answering 500 on /health gets
    no traffic within a few seconds, although Cloud Map reports it HEALTHY."""
    sick = mesh.backends["checked-sick"].port
    wait_for(lambda: "failed_active_hc" in mesh.host_flags("checked/blue").get(sick, ""), 10)
    assert mesh.answers("/checked", 50) == Counter({"checked-ok": 50})


def test_outlier_detection_ejects_an_endpoint_answering_500(mesh: PolicyMesh) -> None:
    """OUTLIER=5xx=3: the endpoint returning 500 is ejected; its share drops to about 0."""
    warmup = mesh.answers("/outlier", 20)
    assert warmup["500"] >= 1, warmup  # it did get traffic before its ejection
    wait_for(lambda: "failed_outlier_check" in str(mesh.host_flags("outlier/blue")), 10)
    after = mesh.answers("/outlier", 100)
    assert after["outlier-ok"] >= 99, after


def test_limits_shed_concurrent_requests_as_overloaded(mesh: PolicyMesh) -> None:
    """LIMITS=requests=1 pending=1, 10 concurrent slow requests: some get 503 x-envoy-overloaded."""
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: mesh.get("/limited"), range(10)))
    statuses = Counter((status, body) for status, body, _ in results)
    assert statuses[(503, "overloaded")] >= 1, statuses
    assert statuses[(200, "limited")] >= 1, statuses


def test_fault_injection_aborts_and_delays(mesh: PolicyMesh) -> None:
    """FAULT=abort=503@100%: every request 503; FAULT=delay=200ms@100%: each takes >= 200 ms."""
    assert mesh.answers("/abort", 20) == Counter({"503": 20})
    undelayed = [mesh.get("/tuna")[2] for _ in range(5)]
    delayed = []
    for _ in range(5):
        status, body, seconds = mesh.get("/delay")
        assert (status, body) == (200, "delay"), (status, body)
        delayed.append(seconds)
    # Envoy's timers have millisecond resolution and may fire a little early (0.1978 s was
    # measured once for 200 ms), so the bound leaves 10 ms; the undelayed route through the
    # same Envoy shows the time is the fault's, not the path's.
    assert min(delayed) >= 0.19 and max(undelayed) < 0.1, (delayed, undelayed)


def test_rate_limit_answers_429_beyond_the_bucket(mesh: PolicyMesh) -> None:
    """RATE_LIMIT=5/s: a burst of 50 requests gets at least 40 answers 429."""
    burst = mesh.answers("/rated", 50)
    assert burst["429"] >= 40, burst


def test_header_route_sends_canary_traffic_to_green_only(mesh: PolicyMesh) -> None:
    """[header:x-canary=1]/tuna=1 on green, /tuna blue=100 green=0: with the header every request
    reaches green, without it every request reaches blue."""
    assert mesh.answers("/tuna", 50, {"x-canary": "1"}) == Counter({"tuna-green": 50})
    assert mesh.answers("/tuna", 50) == Counter({"tuna-blue": 50})
    assert mesh.answers("/tuna", 20, {"x-canary": "2"}) == Counter({"tuna-blue": 20})


def test_new_endpoint_changes_only_the_endpoint_file(mesh: PolicyMesh) -> None:
    """A task registered in Cloud Map: only the cluster's endpoint file changes, Envoy does not
    re-create the cluster (cluster_modified stays), and the endpoint the active health check
    marked unhealthy stays unhealthy across the change."""
    sick = mesh.backends["eds-sick"].port
    wait_for(lambda: "failed_active_hc" in mesh.host_flags("eds/blue").get(sick, ""), 10)
    modified = mesh.stat("cluster_manager.cluster_modified")
    mesh.backends["eds-new"] = new = Backend("eds-new")
    mesh.cloudmap.register_instance(
        ServiceId=mesh.service_ids["eds-blue"],
        InstanceId="task-new",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(new.port)},
    )
    version = mesh.cycle()
    wait_for(lambda: mesh.serving(version), 30, "the fetcher applying the new version")
    wait_for(lambda: new.port in mesh.host_flags("eds/blue"), 10, "envoy knowing the new host")
    applied = next(a for a in mesh.applied() if a["version"] == version)
    assert applied["changed_files"] == [eds_file_name("eds/blue")]
    assert applied["confirm"] == "accepted"
    assert mesh.stat("cluster_manager.cluster_modified") == modified
    assert "failed_active_hc" in mesh.host_flags("eds/blue")[sick]
    wait_for(lambda: mesh.answers("/eds", 30).keys() == {"eds-ok", "eds-new"}, 15, "new host used")
