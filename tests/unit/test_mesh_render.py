"""Mesh contexts, template precedence, and rendering that no input can break out of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from configurator.conventions import Endpoint, NamespaceModel, RouteDecl, ServiceColor
from configurator.mesh import NodeContext, build_nodes, merge_routes
from configurator.render import TemplateLibrary, render_node
from shared.models import Problem


def sc(service: str, color: str, *routes: tuple[str, bool, int], eps: int = 1) -> ServiceColor:
    return ServiceColor(
        service,
        color,
        False,
        tuple(RouteDecl(p, priv, w) for p, priv, w in routes),
        tuple(Endpoint(f"10.0.0.{i + 1}", 8000) for i in range(eps)),
    )


def test_routes_most_specific_first_catch_all_last() -> None:
    """Longer prefixes come first so /tuna/fin is never shadowed by /tuna; '*' is last."""
    ns = NamespaceModel(
        "ns",
        (
            sc("a", "x", ("*", False, 1), ("/tuna", False, 1)),
            sc("b", "x", ("/tuna/fin", False, 1), ("/b", False, 1)),
        ),
    )
    assert [r.path for r in merge_routes(ns, [])] == ["/tuna/fin", "/tuna", "/b", "*"]


def test_mixed_visibility_is_kept_private_and_reported() -> None:
    """A path public for one color and private for another is private (never widened)."""
    problems: list[Problem] = []
    ns = NamespaceModel("ns", (sc("a", "b", ("/p", False, 1)), sc("a", "g", ("/p", True, 1))))
    (route,) = merge_routes(ns, problems)
    assert route.private and problems[0].item == "route '/p'"


def test_zero_weights_leave_the_split_and_all_zero_means_503() -> None:
    """Colors weighing 0 get no traffic; a route of only zero weights has no clusters."""
    ns = NamespaceModel(
        "ns",
        (
            sc("t", "blue", ("/t", False, 0), ("/z", False, 0)),
            sc("t", "green", ("/t", False, 5)),
        ),
    )
    gateway = build_nodes(ns, [])[0]
    routes = {r["route_path"]: r for r in gateway.context["listeners"][0]["routes"]}
    assert routes['"/t"']["clusters"] == [{"cluster_name": '"t/green"', "route_weight": 5}]
    assert routes['"/t"']["has_many_clusters"] is False
    assert routes['"/z"']["has_clusters"] is False


def lib(tmp_path: Path, overrides: dict[str, str]) -> TemplateLibrary:
    for rel, text in overrides.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return TemplateLibrary.from_dir(tmp_path)


def nodes() -> list[NodeContext]:
    ns = NamespaceModel("fish", (sc("tuna", "blue", ("/t", False, 1)), sc("tuna", "green")))
    return build_nodes(ns, [])


def test_override_precedence_most_specific_wins_per_file(tmp_path: Path) -> None:
    """color dir > service dir > namespace dir > defaults, decided file by file."""
    library = lib(
        tmp_path,
        {
            "fish/cds.yaml": "ns-cds",
            "fish/tuna/cds.yaml": "service-cds",
            "fish/tuna/blue/cds.yaml": "color-cds",
            "fish/tuna/lds.yaml": "service-lds",
            "fish/gateway/lds.yaml": "gateway-lds",
        },
    )
    gateway, blue, green = nodes()
    assert library.for_node(blue).sources["cds.yaml"] == "color-cds"
    assert library.for_node(blue).sources["lds.yaml"] == "service-lds"
    assert library.for_node(green).sources["cds.yaml"] == "service-cds"
    assert library.for_node(gateway).sources["cds.yaml"] == "ns-cds"
    assert library.for_node(gateway).sources["lds.yaml"] == "gateway-lds"


def test_extra_template_files_are_rendered_and_shipped(tmp_path: Path) -> None:
    """A template the defaults do not have is rendered for the nodes that see it."""
    library = lib(tmp_path, {"fish/tuna/blue/extra.json": '{"node": {{{node_id}}}}'})
    gateway, blue, _ = nodes()
    assert render_node(library.for_node(blue), blue)["extra.json"] == b'{"node": "fish/tuna/blue"}'
    assert "extra.json" not in render_node(library.for_node(gateway), gateway)


def test_partials_come_from_the_template_set_never_the_disk(tmp_path: Path) -> None:
    """{{> name}} includes a template of the node; a path to a file on disk renders nothing."""
    (tmp_path / "secret.mustache").write_text("SECRET")
    library = lib(
        tmp_path,
        {
            "fish/gateway/x.txt": "[{{> part.txt}}][{{> ../../secret}}]",
            "fish/gateway/part.txt": "P",
        },
    )
    gateway = nodes()[0]
    assert render_node(library.for_node(gateway), gateway)["x.txt"] == b"[P][]"


HOSTILE = [
    'x"\n  injected: true\n',
    "{{#listeners}}{{/listeners}}",
    "a: b\n- c",
    "'; ]}",
    "${NJ_ADMIN_PORT}\\u0000",
    "\u2028line",
    "nul\x00nel\x85tab\t",
    "# comment",
    "&anchor *alias !!python/object",
]


def structure(doc: Any) -> Any:
    """The shape of a document: keys and nesting, with every scalar blanked."""
    if isinstance(doc, dict):
        return {k: structure(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [structure(v) for v in doc]
    return None


def test_hostile_values_cannot_change_the_yaml_structure() -> None:
    """Even unvalidated names and paths stay scalars: same shape as benign input, same value."""

    def render(name: str, path: str) -> dict[str, Any]:
        service = ServiceColor(
            name, name, True, (RouteDecl(path, False, 1),), (Endpoint("10.0.0.1", 80),)
        )
        node = build_nodes(NamespaceModel("ns", (service,)), [])[1]
        files = render_node(TemplateLibrary.from_dir().for_node(node), node)
        # the endpoint file's name is a digest of the cluster name: compare it by role
        return {"eds" if n.startswith("eds-") else n: yaml.safe_load(d) for n, d in files.items()}

    benign = render("svc", "/path")
    for value in HOSTILE:
        hostile = render(value, "/" + value)
        assert structure(hostile) == structure(benign), value
        cluster = hostile["cds.yaml"]["resources"][0]
        assert cluster["name"] == f"{value}/{value}"
        routes = hostile["lds.yaml"]["resources"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]["route_config"]["virtual_hosts"][0]["routes"]
        assert routes[1]["match"]["prefix"] == "/" + value
