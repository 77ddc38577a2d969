"""HOSTS: host names validated, one virtual host per service, conflicts reported, and the
default listener template rendering them (Envoy validation runs in the integration tests)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from configurator.conventions import (
    HOST_FORM,
    NamespaceModel,
    RouteDecl,
    ServiceColor,
    parse_hosts,
    read_service,
)
from configurator.discovery import RawInstance, RawService
from configurator.mesh import build_nodes, split_virtual_hosts
from configurator.render import TemplateLibrary, render_node
from shared.models import Problem


@pytest.mark.parametrize(
    ("value", "hosts", "rejected"),
    [
        (
            "colorteller.appmesh-demo.local,colorteller",
            ("colorteller", "colorteller.appmesh-demo.local"),
            [],
        ),
        (" A.Example.COM , a.example.com ", ("a.example.com",), []),
        ("*.example.com", ("*.example.com",), []),
        ("*", (), ["*"]),
        ("a.*.com,ok", ("ok",), ["a.*.com"]),
        ("host:8080", (), ["host:8080"]),
        ("-bad.com,bad-.com,under_score", (), ["-bad.com", "bad-.com", "under_score"]),
        ("x" * 64, (), ["x" * 64]),
        (".".join(["a" * 63] * 4), (), [".".join(["a" * 63] * 4)]),  # 255 > 253
        ("", (), [""]),
    ],
)
def test_host_names_follow_rfc_1123_with_only_a_leading_wildcard(
    value: str, hosts: tuple[str, ...], rejected: list[str]
) -> None:
    """Labels of letters, digits and inner '-', at most 63 characters each and 253 in all,
    case-insensitive; the only wildcard is a leading '*.'; no port."""
    assert parse_hosts(value) == (hosts, rejected)


@given(st.text(max_size=80))
def test_no_host_outside_the_form_is_kept(value: str) -> None:
    """Whatever the attribute holds, every kept host matches the documented form."""
    hosts, _ = parse_hosts(value)
    assert all(HOST_FORM.match(h) and len(h) <= 253 for h in hosts)


def raw(**attributes: str) -> RawService:
    return RawService("srv", "svc", (RawInstance("service-settings", attributes),))


def test_a_bad_host_is_a_problem_and_the_others_are_kept() -> None:
    """One malformed entry is reported; the service keeps its valid hosts and its routes."""
    problems: list[Problem] = []
    sc = read_service(
        "ns", raw(SERVICE="a", COLOR="b", HOSTS="a.local,b_x", **{"/": "1"}), problems
    )
    assert sc is not None and sc.hosts == ("a.local",) and len(sc.routes) == 1
    assert [p.item for p in problems] == ["attribute 'HOSTS' = 'a.local,b_x'"]


def color(service: str, name: str, hosts: tuple[str, ...], *paths: str) -> ServiceColor:
    routes = tuple(RouteDecl(p, False, 1) for p in paths)
    return ServiceColor(service, name, False, routes, (), hosts=hosts)


def test_each_service_with_hosts_gets_its_own_virtual_host() -> None:
    """Two services declaring '/' under different HOSTS do not merge; the shared '*' host keeps
    the services without HOSTS."""
    ns = NamespaceModel(
        "ns",
        (
            color("a", "blue", ("a.local",), "/"),
            color("b", "blue", ("b.local", "b"), "/"),
            color("c", "main", (), "/"),
        ),
    )
    problems: list[Problem] = []
    vhosts = split_virtual_hosts(ns, problems)
    assert [(v.name, v.domains) for v in vhosts] == [
        ("mesh", ("*",)),
        ("hosts:a", ("a.local",)),
        ("hosts:b", ("b", "b.local")),
    ]
    assert [[w for r in v.routes for w in r.weights] for v in vhosts] == [
        [("c/main", 1)],
        [("a/blue", 1)],
        [("b/blue", 1)],
    ]
    assert problems == []


def test_colors_of_a_service_share_the_union_of_their_hosts() -> None:
    """Colors declaring different HOSTS are reported; the service answers for every host."""
    ns = NamespaceModel(
        "ns",
        (color("a", "blue", ("a.local",), "/"), color("a", "green", ("a", "a.local"), "/")),
    )
    problems: list[Problem] = []
    (_, vhost) = split_virtual_hosts(ns, problems)
    assert vhost.domains == ("a", "a.local")
    assert [w for r in vhost.routes for w in r.weights] == [("a/blue", 1), ("a/green", 1)]
    assert [p.item for p in problems] == ["service 'a' HOSTS"]


def test_a_host_claimed_by_two_services_stays_with_the_first() -> None:
    """The second claim is a problem, not a silent override; a service left without hosts
    routes in the shared space."""
    ns = NamespaceModel(
        "ns", (color("a", "x", ("h.local",), "/a"), color("b", "x", ("h.local",), "/b"))
    )
    problems: list[Problem] = []
    vhosts = split_virtual_hosts(ns, problems)
    assert [(v.name, v.domains) for v in vhosts] == [("mesh", ("*",)), ("hosts:a", ("h.local",))]
    assert [r.path for r in vhosts[0].routes] == ["/b"]
    assert problems[0].item == "host 'h.local'"
    assert "stays with 'a'" in problems[0].reason


def virtual_hosts(ns: NamespaceModel, node: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    context = build_nodes(ns, [])[node]
    files = render_node(TemplateLibrary.from_dir().for_node(context), context)
    listener = yaml.safe_load(files["lds.yaml"])["resources"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["route_config"]["virtual_hosts"]), hcm["route_config"]


def test_the_default_template_renders_host_virtual_hosts_and_ignores_the_port() -> None:
    """Rendered lds.yaml: '*' first with /ping, then one virtual host per service with its
    domains; ignore_port_in_host_matching only when a service has hosts. On the gateway a
    private path of a host is answered 404."""
    ns = NamespaceModel(
        "ns",
        (
            ServiceColor(
                "a",
                "blue",
                False,
                (RouteDecl("/", False, 1), RouteDecl("/adm", True, 1)),
                (),
                hosts=("a.local",),
            ),
            color("c", "main", (), "/"),
        ),
    )
    vhosts, config = virtual_hosts(ns, 0)
    assert config["ignore_port_in_host_matching"] is True
    assert [(v["name"], v["domains"]) for v in vhosts] == [
        ("mesh", ["*"]),
        ("hosts:a", ["a.local"]),
    ]
    assert vhosts[0]["routes"][0]["match"] == {"path": "/ping"}
    assert [r["match"]["prefix"] for r in vhosts[1]["routes"]] == ["/adm", "/"]
    assert vhosts[1]["routes"][0]["direct_response"] == {"status": 404}
    assert vhosts[1]["routes"][1]["route"]["cluster"] == "a/blue"
    sidecar, _ = virtual_hosts(ns, 1)
    assert sidecar[1]["routes"][0]["route"]["cluster"] == "a/blue"


def test_without_hosts_the_listener_is_as_before() -> None:
    """No HOSTS anywhere: one '*' virtual host, no port option — existing meshes unchanged."""
    vhosts, config = virtual_hosts(NamespaceModel("ns", (color("c", "main", (), "/"),)), 0)
    assert "ignore_port_in_host_matching" not in config
    assert [(v["name"], v["domains"]) for v in vhosts] == [("mesh", ["*"])]
