"""Many meshes: GATEWAY and PEERS read as documented, peers resolved against the served
namespaces, the peer listeners and clusters in the context, and the render cache never sharing
a render between sidecars with different peers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configurator.conventions import (
    PEER_FORM,
    Endpoint,
    Peer,
    parse_peers,
    read_namespace,
    read_service,
)
from configurator.discovery import RawInstance, RawNamespace, RawService
from configurator.mesh import NodeContext
from configurator.peers import MeshDirectory, build_linked_nodes, within
from configurator.render import RenderCache, TemplateSet
from shared.models import Problem

A, B = "fish.service.local", "ocean.service.local"


# -- PEERS ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "peers", "rejected"),
    [
        (
            "ocean.service.local:9101,reef.service.local:9102:direct",
            (Peer(B, 9101), Peer("reef.service.local", 9102, True)),
            [],
        ),
        (" Ocean.Service.Local:9101 ", (Peer(B, 9101),), []),
        ("ocean.service.local:1023", (), ["ocean.service.local:1023"]),
        ("ocean.service.local:65536", (), ["ocean.service.local:65536"]),
        ("ocean.service.local:1024", (Peer(B, 1024),), []),
        ("ocean.service.local:9101:gateway", (), ["ocean.service.local:9101:gateway"]),
        ("ocean.service.local", (), ["ocean.service.local"]),
        ("ocean.service.local:9101,", (Peer(B, 9101),), [""]),
        ("a:9101,a:9102", (Peer("a", 9101),), ["a:9102"]),
        ("a:9101,b:9101:direct", (Peer("a", 9101),), ["b:9101:direct"]),
        ("-a:9101,a/b:9102,a b:9103", (), ["-a:9101", "a/b:9102", "a b:9103"]),
    ],
)
def test_peer_items_follow_the_form_and_each_bad_one_is_rejected_alone(
    value: str, peers: tuple[Peer, ...], rejected: list[str]
) -> None:
    """<namespace>:<port>[:direct], port 1024-65535, no namespace or port twice; a bad item
    is rejected by itself and the others are kept."""
    got, bad = parse_peers(value)
    assert got == peers
    assert [item for item, _ in bad] == rejected


@given(st.text(max_size=120))
def test_no_peer_outside_the_form_is_kept(value: str) -> None:
    """Whatever PEERS holds, every kept peer fits the form, and namespaces and ports are unique."""
    peers, _ = parse_peers(value)
    assert all(PEER_FORM.match(p.label) and 1024 <= p.port <= 65535 for p in peers)
    assert len({p.namespace for p in peers}) == len({p.port for p in peers}) == len(peers)


def settings(name: str, attributes: dict[str, str], *tasks: RawInstance) -> RawService:
    return RawService(f"srv-{name}", name, (RawInstance("service-settings", attributes), *tasks))


def task(n: int, ip: str = "10.1.0.{}", health: str = "HEALTHY") -> RawInstance:
    return RawInstance(
        f"t{n}", {"AWS_INSTANCE_IPV4": ip.format(n), "AWS_INSTANCE_PORT": "80"}, health
    )


def test_a_bad_peer_item_is_a_problem_naming_it_and_the_form() -> None:
    """One problem per bad item, naming it and the accepted form; the color keeps its routes
    and its good peers."""
    problems: list[Problem] = []
    raw = settings("a", {"SERVICE": "a", "COLOR": "b", "/a": "1", "PEERS": f"{B}:9101,x:80"})
    sc = read_service(A, raw, problems)
    assert sc is not None and sc.peers == (Peer(B, 9101),) and len(sc.routes) == 1
    (problem,) = problems
    assert problem.item == "attribute 'PEERS' item 'x:80'"
    assert "<namespace>:<port>[:direct]" in problem.reason and "1024" in problem.reason


# -- GATEWAY -------------------------------------------------------------------------------
def namespace(name: str, *services: RawService) -> RawNamespace:
    return RawNamespace(f"id-{name}", name, services)


def test_a_gateway_service_holds_the_gateway_tasks() -> None:
    """GATEWAY=yes without SERVICE/COLOR: its healthy, well-formed instances are the gateway
    endpoints; it is no service-color."""
    raw = namespace(
        B,
        settings("gw", {"GATEWAY": "Yes"}, task(2), task(1), task(3, health="UNHEALTHY")),
        settings("tuna-blue", {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "1"}),
    )
    model, problems = read_namespace(raw)
    assert problems == []
    assert model.gateway is not None and model.gateway.name == "gw"
    assert model.gateway.endpoints == (Endpoint("10.1.0.1", 80), Endpoint("10.1.0.2", 80))
    assert [sc.service for sc in model.service_colors] == ["tuna"]


@pytest.mark.parametrize(
    ("attributes", "item"),
    [
        ({"GATEWAY": "maybe"}, "attribute 'GATEWAY' = 'maybe'"),
        ({"GATEWAY": "yes", "SERVICE": "gw", "COLOR": "x"}, "attribute 'GATEWAY'"),
    ],
)
def test_a_gateway_service_that_is_not_one_is_skipped_with_a_problem(
    attributes: dict[str, str], item: str
) -> None:
    """A GATEWAY value that is neither yes nor no, or GATEWAY beside SERVICE/COLOR: skipped,
    reported, no gateway and no service-color."""
    model, problems = read_namespace(namespace(B, settings("gw", attributes, task(1))))
    assert (model.gateway, model.service_colors) == (None, ())
    assert [p.item for p in problems] == [item]


def test_gateway_no_is_an_ordinary_service_color_and_extra_keys_on_a_gateway_are_ignored() -> None:
    """GATEWAY=no changes nothing; a route key on a gateway service is reported and ignored."""
    raw = namespace(
        B,
        settings("gw", {"GATEWAY": "yes", "/x": "1"}, task(1)),
        settings("t", {"SERVICE": "t", "COLOR": "b", "GATEWAY": "no", "/t": "1"}),
    )
    model, problems = read_namespace(raw)
    assert model.gateway is not None and [sc.service for sc in model.service_colors] == ["t"]
    assert [(p.where, p.item) for p in problems] == [(f"{B}/gw", "attribute '/x'")]


def test_two_gateway_services_keep_the_first_by_name() -> None:
    """The one whose Cloud Map name sorts first is the gateway; the other is a problem."""
    raw = namespace(
        B,
        settings("gw-b", {"GATEWAY": "yes"}, task(2)),
        settings("gw-a", {"GATEWAY": "yes"}, task(1)),
    )
    model, problems = read_namespace(raw)
    assert model.gateway is not None and model.gateway.name == "gw-a"
    assert [(p.where, p.item) for p in problems] == [(f"{B}/gw-b", "attribute 'GATEWAY'")]


@given(st.text(max_size=30), st.booleans())
def test_hostile_gateway_values_never_reach_the_model(value: str, with_service: bool) -> None:
    """A gateway exists only for a recognised yes without SERVICE; anything else is a problem
    or an ordinary service, never a crash."""
    extra = {"SERVICE": "s", "COLOR": "c"} if with_service else {}
    model, _ = read_namespace(namespace(B, settings("gw", {"GATEWAY": value, **extra}, task(1))))
    is_yes = value.strip().lower() in {"yes", "true", "enabled", "active", "1"}
    assert (model.gateway is not None) == (is_yes and not with_service)


# -- resolution and context ----------------------------------------------------------------
def ocean(
    weight_blue: str = "90", gateway: bool = True, gateway_ip: str = "10.9.0.{}"
) -> RawNamespace:
    services = [
        settings(
            "tuna-blue",
            {"SERVICE": "tuna", "COLOR": "blue", "/tuna": weight_blue, "?/tuna/admin": "1"},
            task(1),
        ),
        settings("tuna-green", {"SERVICE": "tuna", "COLOR": "green", "/tuna": "10"}, task(2)),
        settings("cod-blue", {"SERVICE": "cod", "COLOR": "blue", "?/cod": "1"}, task(3)),
    ]
    if gateway:
        services.append(settings("gw", {"GATEWAY": "yes"}, task(1, gateway_ip)))
    return namespace(B, *services)


def fish(peers: dict[str, str], hosts: str = "") -> RawNamespace:
    """One color per entry of ``peers`` (color name -> PEERS value, "" for none)."""
    services = []
    for color, value in peers.items():
        attributes = {"SERVICE": "shark", "COLOR": color, "/shark": "1"}
        if value:
            attributes["PEERS"] = value
        if hosts:
            attributes["HOSTS"] = hosts
        services.append(settings(f"shark-{color}", attributes, task(1, "10.0.0.{}")))
    return namespace(A, *services)


def build(
    *raws: RawNamespace, served: list[str] | None = None
) -> tuple[dict[str, NodeContext], list[Problem]]:
    problems: list[Problem] = []
    models = {}
    for raw in raws:
        model, found = read_namespace(raw)
        models[model.name] = model
        problems.extend(found)
    directory = MeshDirectory(models, served or list(models))
    nodes = {}
    for model in models.values():
        nodes.update((n.node_id, n) for n in build_linked_nodes(model, problems, directory))
    return nodes, problems


def sidecar(color: str) -> str:
    return f"{A}/shark/{color}"


def listeners(node: NodeContext) -> dict[str, dict[str, Any]]:
    return {listener["listener_name"]: listener for listener in node.context["listeners"]}


def routes_of(vhost: dict[str, Any]) -> dict[str, Any]:
    return {
        r["route_path"]: "404" if r["is_blocked"] else [c["cluster_name"] for c in r["clusters"]]
        for r in vhost["routes"]
    }


def test_through_the_gateway_every_request_goes_to_the_peer_gateway_tasks() -> None:
    """Default mode: a listener on the peer's port whose one route sends everything to a
    cluster of the peer's gateway endpoints; the main listener routes Host B and *.B there."""
    nodes, problems = build(fish({"blue": f"{B}:9101"}), ocean())
    assert problems == []
    node = nodes[sidecar("blue")]
    peer = listeners(node)[f'"peer:{B}"']
    assert (peer["port"], peer["is_peer"], peer["peer_mode"]) == (9101, True, '"gateway"')
    (vhost,) = peer["virtual_hosts"]
    assert vhost["domains"] == ['"*"'] and routes_of(vhost) == {'"/"': [f'"peer:{B}/gateway"']}
    main = listeners(node)['"egress"']
    by_name = {v["virtual_host_name"]: v for v in main["virtual_hosts"]}
    assert by_name[f'"peer:{B}"']["domains"] == [f'"{B}"', f'"*.{B}"']
    assert main["has_host_routing"] is True  # Host with a port matches too
    gateway = next(
        c for c in node.context["clusters"] if c["cluster_name"] == f'"peer:{B}/gateway"'
    )
    assert gateway["endpoints"] == [{"host": '"10.9.0.1"', "port": 80, "is_last": True}]
    assert node.context["peers"][0]["peer_port"] == 9101


def test_direct_carries_the_peer_gateway_routes_private_paths_answer_404() -> None:
    """Direct: B's public routes and weights to peer:B/... clusters, B's private paths blocked,
    and only the clusters those routes use (cod is private only: no cluster)."""
    nodes, problems = build(fish({"blue": f"{B}:9102:direct"}), ocean())
    assert problems == []
    node = nodes[sidecar("blue")]
    (vhost,) = listeners(node)[f'"peer:{B}"']["virtual_hosts"]
    assert vhost["is_default_host"] is True  # /ping answered locally, as B's gateway would
    assert routes_of(vhost) == {
        '"/tuna/admin"': "404",
        '"/tuna"': [f'"peer:{B}/tuna/blue"', f'"peer:{B}/tuna/green"'],
        '"/cod"': "404",
    }
    weights = [c["route_weight"] for c in vhost["routes"][1]["clusters"]]
    assert weights == [90, 10]
    names = [c["cluster_name"] for c in node.context["clusters"]]
    assert names == ['"shark/blue"', f'"peer:{B}/tuna/blue"', f'"peer:{B}/tuna/green"']


@pytest.mark.parametrize(
    ("value", "served", "says"),
    [
        (f"{A}:9101", None, "does not peer with itself"),
        ("abyss.service.local:9101", None, "not served by this configurator"),
        (f"{B}:9101", None, "has no gateway service"),
    ],
)
def test_peers_that_cannot_be_reached_are_problems_and_get_no_listener(
    value: str, served: list[str] | None, says: str
) -> None:
    """Self, not served, no gateway (default mode): a problem for that sidecar, naming the item;
    the sidecar keeps its own routes and gets no peer listener."""
    nodes, problems = build(fish({"blue": value}), ocean(gateway=False), served=served)
    (problem,) = problems
    assert problem.where == sidecar("blue") and problem.item == f"PEERS item {value!r}"
    assert says in problem.reason
    node = nodes[sidecar("blue")]
    assert list(listeners(node)) == ['"egress"'] and not node.context["has_peers"]


def test_direct_needs_no_gateway_service() -> None:
    """:direct reaches B's clusters even when B has no gateway service."""
    nodes, problems = build(fish({"blue": f"{B}:9101:direct"}), ocean(gateway=False))
    assert problems == [] and f'"peer:{B}"' in listeners(nodes[sidecar("blue")])


def test_a_peer_that_failed_to_build_keeps_the_sidecar_on_its_previous_files() -> None:
    """A served peer namespace missing from the directory (it failed) makes the sidecars that
    peer with it unavailable; the others build."""
    model, _ = read_namespace(fish({"blue": f"{B}:9101", "green": ""}))
    directory = MeshDirectory({A: model}, [A, B])
    nodes = {n.node_id: n for n in build_linked_nodes(model, [], directory)}
    assert "failed to build" in nodes[sidecar("blue")].unavailable
    assert nodes[sidecar("green")].unavailable == ""


def test_own_hosts_inside_a_peer_namespace_are_a_problem_and_stay_with_their_service() -> None:
    """HOSTS tuna.ocean.service.local on a fish service: reported once; on the main listener
    that name stays with the fish service, B keeps B and *.B."""
    nodes, problems = build(fish({"blue": f"{B}:9101"}, hosts=f"x.{B},{B}"), ocean())
    assert sorted(p.item for p in problems) == [f"host '{B}'", f"host 'x.{B}'"]
    main = listeners(nodes[sidecar("blue")])['"egress"']
    domains = [d for v in main["virtual_hosts"] for d in v["domains"]]
    assert len(domains) == len(set(domains))  # Envoy refuses a domain twice
    by_name = {v["virtual_host_name"]: v["domains"] for v in main["virtual_hosts"]}
    assert by_name[f'"peer:{B}"'] == [f'"*.{B}"']


def test_within_a_namespace() -> None:
    """A name, its subdomains and wildcards under it are in the namespace; a parent is not."""
    assert within(B, B) and within(f"a.{B}", B) and within(f"*.{B}", B)
    assert not within("*.service.local", B) and not within(f"x{B}", B)


# -- the render cache ----------------------------------------------------------------------
LISTENERS = TemplateSet(
    {"lds.yaml": "{{#listeners}}{{{listener_name}}} {{{port}}}\n{{/listeners}}"}
)


def test_sidecars_with_different_peers_never_share_a_context_or_a_render() -> None:
    """Same PEERS: one shared context; different PEERS or none: different ones, and each
    render shows that sidecar's own listeners."""
    nodes, _ = build(
        fish(
            {"a": f"{B}:9101", "b": f"{B}:9101", "c": f"{B}:9102", "d": f"{B}:9101:direct", "e": ""}
        ),
        ocean(),
    )
    shark = {c: nodes[sidecar(c)] for c in "abcde"}
    assert shark["a"].shared is shark["b"].shared
    assert len({shark[c].shared_digest for c in "acde"}) == 4
    cache = RenderCache()
    seen = {
        c: cache.render(LISTENERS, node)[0].files["lds.yaml"].decode() for c, node in shark.items()
    }
    assert seen["a"] == seen["b"] == f'"egress" ${{NJ_LISTENER_PORT}}\n"peer:{B}" 9101\n'
    assert seen["c"].endswith(" 9102\n") and seen["e"] == '"egress" ${NJ_LISTENER_PORT}\n'
    assert cache.renders == 4  # a and b share one render


def digests(raw_ocean: RawNamespace) -> dict[str, str]:
    nodes, _ = build(fish({"gw": f"{B}:9101", "direct": f"{B}:9102:direct", "none": ""}), raw_ocean)
    return {node_id: node.shared_digest for node_id, node in nodes.items()}


def test_a_weight_change_in_the_peer_changes_only_what_carries_its_routes() -> None:
    """B's weight: B's nodes and the direct sidecar change; the gateway-mode sidecar (it carries
    only B's gateway tasks) and the sidecar without peers do not."""
    before, after = digests(ocean("90")), digests(ocean("80"))
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == sorted(
        [sidecar("direct"), f"{B}/gateway", f"{B}/cod/blue", f"{B}/tuna/blue", f"{B}/tuna/green"]
    )


def test_a_change_of_the_peer_gateway_tasks_changes_the_gateway_mode_sidecar_only() -> None:
    """B's gateway endpoints: only the sidecar sending to them changes."""
    before, after = digests(ocean()), digests(ocean(gateway_ip="10.8.0.{}"))
    assert sorted(n for n in before if before[n] != after[n]) == [sidecar("gw")]
