"""Many meshes through whole cycles: a moto holding two namespaces (ListServices filtered as on
AWS), renders counted across a change in the peer mesh, and hostile PEERS / GATEWAY values that
never fail a cycle, never reach a template and leave the mesh's own routes serving.

Validation is parse-level here; the real Envoys are in tests/integration/test_many_meshes.py.
"""

from __future__ import annotations

from typing import Any

import boto3
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from configurator.cycle import Configurator
from configurator.discovery import (
    CloudMapDiscovery,
    RawInstance,
    RawNamespace,
    RawService,
    StaticDiscovery,
)
from configurator.mesh import NodeContext
from configurator.render import FileSet, RenderCache, TemplateLibrary, TemplateSet
from configurator.validate import EnvoyValidator
from shared.memory_store import MemoryBundleStore
from tests.cloudmap import CloudMapService, create_namespace, list_services_filtered, register

A, B = "fish.service.local", "ocean.service.local"


def test_moto_holding_two_namespaces_lists_each_ones_services_only() -> None:
    """With the test patch moto's ListServices honours NAMESPACE_ID like AWS, and one scan
    reads each namespace's own services: 2 calls per namespace + 1 per service."""
    with mock_aws(), list_services_filtered():
        cloudmap = boto3.client("servicediscovery")
        ids = {name: create_namespace(cloudmap, name) for name in (A, B)}
        for name, services in ((A, ["shark-blue"]), (B, ["tuna-blue", "tuna-green", "gw"])):
            for service in services:
                register(cloudmap, ids[name], CloudMapService(service, {"GATEWAY": "yes"}))
        listed = cloudmap.list_services(
            Filters=[{"Name": "NAMESPACE_ID", "Values": [ids[B]], "Condition": "EQ"}]
        )["Services"]
        assert sorted(s["Name"] for s in listed) == ["gw", "tuna-blue", "tuna-green"]
        scan = CloudMapDiscovery(cloudmap).scan([A, B])
        got = {ns.name: [s.name for s in ns.services] for ns in scan.namespaces}
        assert got == {A: ["shark-blue"], B: ["gw", "tuna-blue", "tuna-green"]}
        assert scan.calls == 2 * 2 + 4


# -- renders counted -----------------------------------------------------------------------
def service(name: str, attributes: dict[str, str], ip: str) -> RawService:
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": "80"})
    return RawService(name, name, (RawInstance("service-settings", attributes), task))


def meshes(
    blue: int = 90, gateway_ip: str = "10.9.0.1", peers: str | None = None
) -> list[RawNamespace]:
    """fish: shark/direct, shark/gw (through ocean's gateway), shark/none; ocean: tuna 90/10."""
    fish = [
        service(
            f"shark-{color}",
            {"SERVICE": "shark", "COLOR": color, "/shark": "1", **({"PEERS": p} if p else {})},
            "10.0.0.1",
        )
        for color, p in (("direct", f"{B}:9102:direct"), ("gw", peers or f"{B}:9101"), ("none", ""))
    ]
    ocean = [
        service("tuna-blue", {"SERVICE": "tuna", "COLOR": "blue", "/tuna": str(blue)}, "10.1.0.1"),
        service("tuna-green", {"SERVICE": "tuna", "COLOR": "green", "/tuna": "10"}, "10.1.0.2"),
        service("gw", {"GATEWAY": "yes"}, gateway_ip),
    ]
    return [RawNamespace("ns-a", A, tuple(fish)), RawNamespace("ns-b", B, tuple(ocean))]


class CountingCache(RenderCache):
    """The real render cache, remembering each node a render call had to render files for
    (once per call, however many of its files were rendered)."""

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[str] = []

    def render(self, templates: TemplateSet, node: NodeContext) -> tuple[FileSet, ...]:
        before = self.renders
        sets = super().render(templates, node)
        self.rendered += [node.node_id] if self.renders > before else []
        return sets


def cycle_configurator(store: MemoryBundleStore, raw: list[RawNamespace]) -> Configurator:
    return Configurator(
        namespaces=[A, B],
        store=store,
        discovery=StaticDiscovery(raw),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(None),
    )


def test_a_weight_change_in_the_peer_re_renders_its_nodes_and_the_sidecars_carrying_it() -> None:
    """ocean's 90/10 becomes 80/10: ocean's gateway, its sidecars (one shared render) and the
    fish sidecar peering direct are rendered again, nothing else; the gateway-mode sidecar's
    files do not depend on ocean's weights (it sends to ocean's gateway tasks)."""
    store = MemoryBundleStore()
    cfg = cycle_configurator(store, meshes())
    cfg.renders = cache = CountingCache()
    assert cfg.run_cycle().outcome == "published"
    assert len(cache.rendered) == 6  # 2 gateways, fish's 3 peer groups, ocean's sidecars
    cache.rendered.clear()
    cfg.discovery = StaticDiscovery(meshes(blue=80))
    report = cfg.run_cycle()
    direct = f"{A}/shark/direct"
    assert sorted(cache.rendered) == sorted([direct, f"{B}/gateway", f"{B}/tuna/blue"])
    assert report.changed_nodes == sorted(
        [direct, f"{B}/gateway", f"{B}/tuna/blue", f"{B}/tuna/green"]
    )


def test_a_change_of_the_peer_gateway_tasks_re_renders_the_gateway_mode_sidecar_only() -> None:
    """ocean's gateway task moves: only the fish sidecar sending to it is rendered again."""
    store = MemoryBundleStore()
    cfg = cycle_configurator(store, meshes())
    cfg.renders = cache = CountingCache()
    cfg.run_cycle()
    cache.rendered.clear()
    cfg.discovery = StaticDiscovery(meshes(gateway_ip="10.9.0.7"))
    report = cfg.run_cycle()
    assert cache.rendered == [f"{A}/shark/gw"] and report.changed_nodes == [f"{A}/shark/gw"]


# -- hostile values ------------------------------------------------------------------------
NAMESPACES = st.sampled_from(
    [B, "OCEAN.service.local", A, "abyss.service.local", "x" * 300, "", "a b", 'o"c', "-x"]
)
PORTS = st.one_of(st.integers(-5, 70000), st.sampled_from([1023, 1024, 9101, 65535, 65536]))
MODES = st.sampled_from(["", ":direct", ":gateway", ":", ":direct:x", ":DIRECT"])
ITEM = st.one_of(
    st.builds(lambda ns, port, mode: f"{ns}:{port}{mode}", NAMESPACES, PORTS, MODES),
    st.text(max_size=40),
)
PEERS = st.lists(ITEM, max_size=5).map(",".join)
GATEWAYS = st.one_of(st.sampled_from(["yes", "YES", "no", "", "1", "maybe"]), st.text(max_size=12))


def lds_of(store: MemoryBundleStore, node: str) -> dict[str, Any]:
    read = store.read_manifest()
    assert read is not None
    entry = store.get_index(read.manifest.version).files_of(node)["lds.yaml"]
    doc: dict[str, Any] = yaml.safe_load(store.get_object(entry.sha256))
    return doc


def hcm(listener: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def route_clusters(listeners: list[dict[str, Any]]) -> set[str]:
    """Every cluster a route of these listeners sends to."""
    names: set[str] = set()
    for listener in listeners:
        for vhost in hcm(listener)["route_config"]["virtual_hosts"]:
            for r in vhost["routes"]:
                route = r.get("route", {})
                names |= {route["cluster"]} if "cluster" in route else set()
                names |= {c["name"] for c in route.get("weighted_clusters", {}).get("clusters", [])}
    return names


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(peers=PEERS, gateway=GATEWAYS)
def test_hostile_peers_and_gateway_values_never_fail_a_cycle_nor_reach_a_template(
    peers: str, gateway: str
) -> None:
    """Whatever PEERS and GATEWAY hold: the cycle publishes, the sidecar's listeners are its own
    plus at most one per served peer on a port 1024-65535, every peer cluster is the peer's, and
    the sidecar still routes its own /shark."""
    raw = meshes(peers=peers)
    ocean = raw[1]
    gw = service("gw", {"GATEWAY": gateway}, "10.9.0.1")
    raw[1] = RawNamespace(ocean.id, B, (*ocean.services[:2], gw))
    store = MemoryBundleStore()
    report = cycle_configurator(store, raw).run_cycle()
    assert report.outcome == "published" and report.failed_nodes == []
    listeners = lds_of(store, f"{A}/shark/gw")["resources"]
    assert listeners[0]["name"] == "egress"
    for listener in listeners[1:]:
        assert listener["name"] == f"peer:{B}"
        assert 1024 <= listener["address"]["socket_address"]["port_value"] <= 65535
    own = hcm(listeners[0])["route_config"]["virtual_hosts"][0]["routes"]
    assert {"prefix": "/shark"} in [r["match"] for r in own]
    clusters = route_clusters(listeners)
    peer = {f"peer:{B}/{name}" for name in ("gateway", "tuna/blue", "tuna/green")}
    assert clusters <= {"shark/direct", "shark/gw", "shark/none", *peer}


def test_an_unserved_peer_is_a_problem_and_the_rest_publishes() -> None:
    """A peer not in NJ_NAMESPACES: a problem naming the item and the served namespaces; the
    cycle publishes and the sidecar has only its own listener."""
    store = MemoryBundleStore()
    report = cycle_configurator(store, meshes(peers="abyss.service.local:9101")).run_cycle()
    assert report.outcome == "published"
    (problem,) = [p for p in report.problems if p.where == f"{A}/shark/gw"]
    assert problem.item == "PEERS item 'abyss.service.local:9101'"
    assert f"NJ_NAMESPACES: {A}, {B}" in problem.reason
    assert [x["name"] for x in lds_of(store, f"{A}/shark/gw")["resources"]] == ["egress"]
