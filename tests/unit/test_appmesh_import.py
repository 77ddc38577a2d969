"""import-appmesh mapping: every rule, and every App Mesh feature reported as lost.

Fixtures use the App Mesh API reference's describe shapes (tests/appmesh_fixtures.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from nightjar_cli.appmesh import ImportPlan, Loss, path_key, plan_import
from nightjar_cli.appmesh_cli import check_plan
from nightjar_cli.appmesh_sources import api_shape, camel
from tests.appmesh_fixtures import (
    HOST,
    NAMESPACE,
    NO_REWRITE,
    colorteller,
    definitions,
    gateway,
    gateway_route,
    http,
    listener,
    node,
    route,
    service,
)


def plan(resources: dict[str, list[dict[str, Any]]] | None = None) -> ImportPlan:
    return plan_import(definitions(resources))


def attributes(p: ImportPlan, cloud_map_service: str) -> dict[str, str]:
    return next(s.attributes for s in p.settings if s.cloud_map_service == cloud_map_service)


def features(p: ImportPlan) -> list[tuple[str, str]]:
    return [(loss.resource, loss.feature) for loss in p.losses]


def test_the_demo_mesh_maps_onto_service_settings() -> None:
    """Virtual node -> its Cloud Map service; virtual service -> HOSTS; routes -> weights;
    gateway-reachable /color public, everything else private; policies -> policy keys."""
    p = plan()
    assert [(s.namespace, s.cloud_map_service, s.virtual_node) for s in p.settings] == [
        (NAMESPACE, "colorgateway", "colorgateway"),
        (NAMESPACE, "colorteller-blue", "colorteller-blue"),
        (NAMESPACE, "colorteller-white", "colorteller-white"),
    ]
    retries = "3 on=5xx,gateway-error,reset,connect-failure per-try=500ms"
    assert attributes(p, "colorteller-white") == {
        "SERVICE": "colorteller",
        "COLOR": "white",
        "HOSTS": HOST,
        "[private]/": "2",
        "[private]/admin": "1",
        "/color": "2",
        "HEALTH_CHECK": "/ping interval=5s timeout=2s healthy=2 unhealthy=3",
        "LIMITS": "connections=100 pending=10",
        "OUTLIER": "5xx=5 interval=10s eject=30s max=50%",
        "RETRIES": retries,
        "TIMEOUT": "3s",
    }
    assert attributes(p, "colorteller-blue") == {
        "SERVICE": "colorteller",
        "COLOR": "blue",
        "HOSTS": HOST,
        "[private]/": "1",
        "/color": "1",
        "RETRIES": retries,
        "TIMEOUT": "3s",
    }
    assert attributes(p, "colorgateway") == {"SERVICE": "colorgateway", "COLOR": "main"}
    assert p.losses == (
        Loss(
            "virtual node colorgateway",
            "backends allow-list",
            "every sidecar of a nightjar mesh reaches every service of the mesh",
        ),
    )


def test_the_plan_is_accepted_by_the_configurator_conventions() -> None:
    """check_plan runs the configurator's own reading: the demo adds no loss."""
    p = plan()
    assert check_plan(p).losses == p.losses


def test_check_plan_reports_what_nightjar_would_reject() -> None:
    """A path nightjar cannot route (a space) becomes a loss naming the attribute."""
    mesh = colorteller()
    mesh["route"].append(route("colorteller-router", "odd", http("/a b", ("colorteller-blue", 1))))
    lost = check_plan(plan(mesh)).losses
    assert any(loss.feature == "attribute '[private]/a b'" for loss in lost)


def only(kind: str, items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    mesh = colorteller()
    mesh[kind] = items
    return mesh


def test_a_virtual_node_provider_routes_everything_to_the_node() -> None:
    """provider.virtualNode: the node gets the catch-all under the service's host."""
    mesh = colorteller()
    mesh["virtualService"] = [
        service("blue.appmesh-demo.local", {"virtualNode": {"virtualNodeName": "colorteller-blue"}})
    ]
    mesh["gatewayRoute"] = []
    got = attributes(plan(mesh), "colorteller-blue")
    assert got["SERVICE"] == "blue" and got["COLOR"] == "colorteller-blue"
    assert got["HOSTS"] == "blue.appmesh-demo.local" and got["[private]/"] == "1"


@pytest.mark.parametrize("protocol", ["http2", "grpc"])
def test_http2_and_grpc_listeners_set_http2(protocol: str) -> None:
    """listeners[].portMapping.protocol http2/grpc -> HTTP2=yes; http leaves it out."""
    mesh = colorteller()
    mesh["virtualNode"][1]["spec"]["listeners"][0]["portMapping"]["protocol"] = protocol
    p = plan(mesh)
    assert attributes(p, "colorteller-blue")["HTTP2"] == "yes"
    assert "HTTP2" not in attributes(p, "colorteller-white")


def test_default_gateway_rewrite_makes_every_path_public_and_is_reported() -> None:
    """A gateway route without rewrite settings: App Mesh rewrote /color to '/', so every path
    of the service is reachable; the rewrite itself and any-host matching are losses."""
    p = plan(only("gatewayRoute", [gateway_route("gr", "/color", HOST)]))
    white = attributes(p, "colorteller-white")
    assert white["/"] == "2" and white["/admin"] == "1" and "/color" not in white
    assert ("gateway route ingress-gw/gr", "path rewrite") in features(p)
    assert ("gateway route ingress-gw/gr", "any-host gateway match") in features(p)


def test_without_gateway_routes_every_path_is_private() -> None:
    """Paths not reachable through any gateway route are private."""
    white = attributes(plan(only("gatewayRoute", [])), "colorteller-white")
    assert white["[private]/"] == "2" and white["[private]/admin"] == "1"


def test_gateway_hostname_matches_join_hosts() -> None:
    """match.hostname.exact and .suffix become HOSTS entries of the target service."""
    route_ = gateway_route("gr", "/", HOST, NO_REWRITE, hostname={"suffix": "example.com"})
    assert attributes(plan(only("gatewayRoute", [route_])), "colorteller-blue")["HOSTS"] == (
        f"*.example.com,{HOST}"
    )


def test_a_header_route_becomes_a_header_key() -> None:
    """One exact, non-inverted header match -> [header:name=value]/path."""
    headers = [{"name": "X-Canary", "match": {"exact": "1"}}]
    mesh = only(
        "route",
        [
            route(
                "colorteller-router",
                "canary",
                http("/", ("colorteller-blue", 1), match={"prefix": "/", "headers": headers}),
            )
        ],
    )
    assert attributes(plan(mesh), "colorteller-blue")["[private,header:x-canary=1]/"] == "1"
    assert path_key("/p", False, ("x", "1")) == "[header:x=1]/p"


@pytest.mark.parametrize(
    ("match", "feature"),
    [
        ({"path": {"regex": "/a.*"}}, "path regex match"),
        (
            {"prefix": "/", "queryParameters": [{"name": "q", "match": {"exact": "1"}}]},
            "queryParameters match",
        ),
        ({"prefix": "/", "method": "POST"}, "method match"),
        (
            {"prefix": "/", "headers": [{"name": "x", "match": {"regex": ".*"}}]},
            "header (other than one exact, non-inverted) match",
        ),
        (
            {"prefix": "/", "headers": [{"name": "x", "match": {"exact": "1"}, "invert": True}]},
            "header (other than one exact, non-inverted) match",
        ),
    ],
)
def test_narrower_matches_are_not_imported_and_reported(
    match: dict[str, Any], feature: str
) -> None:
    """A route nightjar cannot match as narrowly is dropped (a wider one would steal traffic)."""
    body = http("/", ("colorteller-blue", 1))
    body["match"] = match
    p = plan(only("route", [route("colorteller-router", "r", body)]))
    assert ("route colorteller-router/r", feature) in features(p)
    assert not any(k.startswith(("/", "[")) for k in attributes(p, "colorteller-blue"))


def test_an_exact_path_becomes_a_prefix_and_is_reported() -> None:
    """match.path.exact -> prefix key; the exactness is a loss."""
    body = http("/", ("colorteller-blue", 1))
    body["match"] = {"path": {"exact": "/exact"}}
    p = plan(only("route", [route("colorteller-router", "r", body)]))
    assert attributes(p, "colorteller-blue")["[private]/exact"] == "1"
    assert ("route colorteller-router/r", "exact path") in features(p)


def test_grpc_routes_become_service_prefixes() -> None:
    """grpcRoute serviceName -> /<service>/; gRPC retry events are lost."""
    body = {
        "match": {"serviceName": "color.Teller"},
        "action": {"weightedTargets": [{"virtualNode": "colorteller-blue", "weight": 1}]},
        "retryPolicy": {
            "maxRetries": 2,
            "perRetryTimeout": {"unit": "s", "value": 1},
            "grpcRetryEvents": ["unavailable"],
        },
    }
    p = plan(only("route", [route("colorteller-router", "g", body, "grpcRoute")]))
    blue = attributes(p, "colorteller-blue")
    # the demo's gateway admits /color, so /color.Teller/ is public
    assert blue["/color.Teller/"] == "1" and blue["RETRIES"] == "0"
    assert ("route colorteller-router/g", "gRPC retry events") in features(p)


def test_tcp_routes_priorities_and_tls_are_reported() -> None:
    """TCP routes are dropped; priorities, listener TLS, client TLS and access logs reported."""
    mesh = colorteller()
    mesh["route"] = [
        route("colorteller-router", "tcp", {"action": {"weightedTargets": []}}, "tcpRoute"),
        {
            **route("colorteller-router", "p", http("/", ("colorteller-blue", 1))),
            "spec": {"httpRoute": http("/", ("colorteller-blue", 1)), "priority": 1},
        },
    ]
    mesh["virtualNode"][1]["spec"]["listeners"] = listener(tls={"mode": "STRICT"})
    mesh["virtualNode"][1]["spec"]["backendDefaults"] = {"clientPolicy": {"tls": {}}}
    mesh["virtualNode"][1]["spec"]["logging"] = {"accessLog": {"file": {"path": "/dev/stdout"}}}
    got = features(plan(mesh))
    for expected in [
        ("route colorteller-router/tcp", "TCP route"),
        ("route colorteller-router/p", "route priority"),
        ("virtual node colorteller-blue", "listener TLS"),
        ("virtual node colorteller-blue", "client policy TLS"),
        ("virtual node colorteller-blue", "access log file"),
    ]:
        assert expected in got


def test_nodes_nightjar_cannot_discover_are_not_imported() -> None:
    """DNS discovery, TCP listeners and a second node on one Cloud Map service are reported
    and skipped; awsCloudMap attribute filters are reported and the node kept."""
    dns = node("dns-node", serviceDiscovery={"dns": {"hostname": "x.local"}})
    tcp = node("tcp-node", listeners=[{"portMapping": {"port": 1, "protocol": "tcp"}}])
    twin = node("colorteller-twin")
    twin["spec"]["serviceDiscovery"]["awsCloudMap"]["serviceName"] = "colorteller-blue"
    filtered = node("filtered")
    filtered["spec"]["serviceDiscovery"]["awsCloudMap"]["attributes"] = [
        {"key": "ECS_TASK_DEFINITION_FAMILY", "value": "x"}
    ]
    mesh = colorteller()
    mesh["virtualNode"] += [dns, tcp, twin, filtered]
    p = plan(mesh)
    assert {s.virtual_node for s in p.settings} == {
        "colorgateway",
        "colorteller-blue",
        "colorteller-white",
        "filtered",
    }
    for expected in [
        ("virtual node dns-node", "DNS service discovery"),
        ("virtual node tcp-node", "TCP listener"),
        ("virtual node colorteller-twin", "shared Cloud Map service"),
        ("virtual node filtered", "awsCloudMap.attributes"),
    ]:
        assert expected in features(p)


def test_a_node_behind_two_virtual_services_stays_in_the_first() -> None:
    """A service-color has one SERVICE: the second virtual service's target is dropped."""
    mesh = colorteller()
    mesh["virtualService"].append(
        service(
            "zebra.appmesh-demo.local", {"virtualNode": {"virtualNodeName": "colorteller-blue"}}
        )
    )
    p = plan(mesh)
    assert attributes(p, "colorteller-blue")["SERVICE"] == "colorteller"
    assert (
        "virtual service zebra.appmesh-demo.local",
        "target colorteller-blue of a second virtual service",
    ) in features(p)


def test_route_policies_that_differ_for_one_color_are_reported() -> None:
    """RETRIES/TIMEOUT are per color in nightjar: the first route's value stays (routes in
    priority, then name order: colorteller-admin before colorteller-route)."""
    mesh = colorteller()
    mesh["route"][1]["spec"]["httpRoute"]["timeout"] = {"perRequest": {"unit": "s", "value": 9}}
    p = plan(mesh)
    assert attributes(p, "colorteller-white")["TIMEOUT"] == "9s"
    assert (
        "route colorteller-router/colorteller-route",
        "TIMEOUT differing between routes",
    ) in features(p)


def test_several_gateways_and_oversized_settings_are_reported() -> None:
    """Several virtual gateways collapse into one gateway node; more than 30 attributes on one
    instance cannot be registered."""
    mesh = colorteller()
    mesh["virtualGateway"].append(gateway("second-gw"))
    mesh["route"] = [
        route("colorteller-router", f"r{i}", http(f"/p{i}", ("colorteller-blue", 1)))
        for i in range(30)
    ]
    got = features(plan(mesh))
    assert ("mesh appmesh-demo", "several virtual gateways") in got
    assert ("virtual node colorteller-blue", "more than 30 attributes") in got


def test_a_route_to_a_node_that_is_not_imported_is_reported() -> None:
    """A weighted target naming an unknown node is a loss, not a crash."""
    mesh = only("route", [route("colorteller-router", "r", http("/", ("ghost", 1)))])
    assert ("route colorteller-router/r", "target ghost") in features(plan(mesh))


def test_routers_sort_routes_by_priority_then_name() -> None:
    """The same path twice on one node: the first route (priority, then name) keeps it."""
    mesh = only(
        "route",
        [
            route("colorteller-router", "a", http("/", ("colorteller-blue", 5))),
            {
                **route("colorteller-router", "b", {}),
                "spec": {"httpRoute": http("/", ("colorteller-blue", 7)), "priority": 0},
            },
        ],
    )
    p = plan(mesh)
    assert attributes(p, "colorteller-blue")["[private]/"] == "7"
    assert ("route colorteller-router/a", "path / on colorteller-blue declared twice") in features(
        p
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("AWSCloudMap", "awsCloudMap"),
        ("DNS", "dns"),
        ("HTTP2", "http2"),
        ("HttpRoute", "httpRoute"),
        ("MaxRetries", "maxRetries"),
        ("TLS", "tls"),
        ("GRPC", "grpc"),
        ("meshName", "meshName"),
    ],
)
def test_cloudformation_names_become_api_names(key: str, expected: str) -> None:
    """CloudFormation's PascalCase property names map onto the API's camelCase."""
    assert camel(key) == expected
    assert api_shape({key: [{key: 1}]}) == {expected: [{expected: 1}]}
