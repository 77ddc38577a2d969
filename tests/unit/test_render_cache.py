"""The render cache: each template is rendered from the context fields it reads, so a render is
shared by every node those fields agree on and redone only when one of them changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from configurator.conventions import Endpoint, NamespaceModel, RouteDecl, ServiceColor
from configurator.mesh import PER_NODE_FIELDS, NodeContext, build_nodes
from configurator.render import RenderCache, TemplateSet, referenced_names, render_node

SHARED_ONLY = TemplateSet({"lds.yaml": "ns: {{{namespace}}}\n"})
USES_NODE_ID = TemplateSet({"lds.yaml": "ns: {{{namespace}}}\nid: {{{node_id}}}\n"})
ENDPOINTS = TemplateSet(
    {
        "lds.yaml": "{{#listeners}}{{#routes}}{{{route_path}}} {{/routes}}{{/listeners}}\n",
        "cds.yaml": "{{#clusters}}{{{cluster_name}}} {{/clusters}}\n",
        "eds.yaml": "{{{cluster_name}}}:{{#endpoints}} {{{host}}}{{/endpoints}}\n",
    }
)


def colors(count: int, path: str = "/p", hosts: int = 1) -> tuple[ServiceColor, ...]:
    return tuple(
        ServiceColor(
            f"svc{n}",
            "blue",
            False,
            (RouteDecl(f"{path}{n}", False, 1),),
            tuple(Endpoint(f"10.0.{n}.{k}", 80) for k in range(hosts)),
        )
        for n in range(count)
    )


def sidecars(count: int, namespace: str = "fish") -> list[NodeContext]:
    model = NamespaceModel(namespace, colors(count))
    return [n for n in build_nodes(model, []) if not n.is_gateway]


def files(cache: RenderCache, templates: TemplateSet, node: NodeContext) -> dict[str, bytes]:
    return {name: data for s in cache.render(templates, node) for name, data in s.files.items()}


def test_per_node_fields_are_the_only_difference_between_sidecars() -> None:
    """Sidecars of a namespace share one shared context; their contexts differ only there."""
    first, second = sidecars(2)
    assert first.shared is second.shared and first.shared_digest == second.shared_digest
    assert set(first.per_node) == set(PER_NODE_FIELDS)
    assert not set(first.shared) & set(PER_NODE_FIELDS)
    differing = {k for k in first.context if first.context[k] != second.context[k]}
    assert differing <= set(PER_NODE_FIELDS)


def test_templates_ignoring_per_node_fields_render_once_for_every_sidecar() -> None:
    """One render serves all sidecars with the same shared context and templates."""
    cache = RenderCache()
    rendered = {node.node_id: files(cache, SHARED_ONLY, node) for node in sidecars(20)}
    assert cache.renders == 1
    assert {f["lds.yaml"] for f in rendered.values()} == {b'ns: "fish"\n'}


def test_templates_using_a_per_node_field_render_each_node_with_its_own_values() -> None:
    """A template naming node_id is rendered for every node with its own node_id."""
    cache = RenderCache()
    nodes = sidecars(3)
    got = [files(cache, USES_NODE_ID, node)["lds.yaml"] for node in nodes]
    assert got == [f'ns: "fish"\nid: "{n.node_id}"\n'.encode() for n in nodes]
    assert cache.renders == 3


def test_a_per_node_field_read_inside_a_section_or_partial_is_seen() -> None:
    """Names resolve through the section stack and partials: both count as reads."""
    in_section = "{{#clusters}}{{{cluster_name}}}@{{{node_id}}} {{/clusters}}"
    via_partial = TemplateSet({"lds.yaml": "{{> who}}", "who": "{{{service_member}}}"})
    assert "node_id" in (referenced_names(in_section, {}) or set())
    cache = RenderCache()
    first, second = sidecars(2)
    assert (
        files(cache, via_partial, first)["lds.yaml"]
        != files(cache, via_partial, second)["lds.yaml"]
    )


def test_different_shared_contexts_never_share_a_render() -> None:
    """Another namespace (another shared context) gets its own render."""
    cache = RenderCache()
    fish = files(cache, SHARED_ONLY, sidecars(1, "fish")[0])
    trout = files(cache, SHARED_ONLY, sidecars(1, "trout")[0])
    assert (fish["lds.yaml"], trout["lds.yaml"]) == (b'ns: "fish"\n', b'ns: "trout"\n')


def test_renders_carry_over_one_cycle_and_unused_ones_are_dropped() -> None:
    """The next cycle reuses renders of the last one; a render a cycle did not use is gone."""
    cache = RenderCache()
    node = sidecars(1)[0]
    cache.render(USES_NODE_ID, node)
    cache.end_cycle()
    renders = cache.renders
    cache.render(USES_NODE_ID, node)
    assert cache.renders == renders
    cache.end_cycle()
    cache.end_cycle()  # a cycle without this node
    cache.render(USES_NODE_ID, node)
    assert cache.renders == renders + 1


def test_an_endpoint_change_re_renders_only_that_clusters_endpoint_file() -> None:
    """Routes unchanged: lds is reused; cds lists the clusters but names no endpoint field, so
    it is reused too; of the endpoint files only the moved cluster's is rendered."""
    cache = RenderCache()
    before = colors(50, hosts=2)
    node = [n for n in build_nodes(NamespaceModel("fish", before), []) if not n.is_gateway][0]
    files(cache, ENDPOINTS, node)
    cache.end_cycle()
    renders = cache.renders
    moved = before[7].__class__(**{**before[7].__dict__, "endpoints": (Endpoint("10.9.9.9", 80),)})
    after = (*before[:7], moved, *before[8:])
    node = [n for n in build_nodes(NamespaceModel("fish", after), []) if not n.is_gateway][0]
    got = files(cache, ENDPOINTS, node)
    assert cache.renders - renders == 1  # svc7's endpoint file
    assert b'"svc7/blue": "10.9.9.9"\n' in got.values()


def test_a_route_change_re_renders_the_listeners_only() -> None:
    """A new path changes what lds reads (listeners), not what cds or eds read (clusters)."""
    cache = RenderCache()
    model = NamespaceModel("fish", colors(50))
    files(cache, ENDPOINTS, build_nodes(model, [])[1])
    cache.end_cycle()
    renders = cache.renders
    changed = colors(50, path="/q")
    node = build_nodes(NamespaceModel("fish", changed), [])[1]
    got = files(cache, ENDPOINTS, node)
    assert cache.renders - renders == 1
    assert b'"/q0"' in got["lds.yaml"]


_TAGS = st.sampled_from(
    [
        "{{{namespace}}}",
        "{{{node_id}}}",
        "{{{service}}}",
        "{{#clusters}}{{{cluster_name}}}{{{color}}}{{/clusters}}",
        "{{#clusters}}{{{service}}}/{{{node_id}}}{{/clusters}}",
        "{{#listeners}}{{#routes}}{{{route_path}}}{{/routes}}{{/listeners}}",
        "{{^is_gateway}}side{{/is_gateway}}",
        "{{#endpoints}}{{{host}}}{{/endpoints}}",
        "{{#clusters}}{{#endpoints}}{{{host}}}{{/endpoints}}{{/clusters}}",
        "{{#clusters}}{{^has_endpoints}}none{{/has_endpoints}}{{/clusters}}",
        "{{{cluster_name}}}",
        "{{> part}}",
        "x",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    main=st.lists(_TAGS, max_size=5),
    eds=st.lists(_TAGS, max_size=4),
    part=st.lists(_TAGS.filter(lambda t: "part" not in t), max_size=3),
)
def test_cached_renders_equal_direct_renders(
    main: list[str], eds: list[str], part: list[str]
) -> None:
    """Whatever a template reads, the cache hands every node exactly what a direct render of
    that node's full context gives (over two cycles with different meshes)."""
    templates = TemplateSet(
        {"lds.yaml": "".join(main), "eds.yaml": "".join(eds), "part": "".join(part)}
    )
    cache = RenderCache()
    for mesh in (colors(3), colors(3, path="/r", hosts=2), colors(3, path="/r", hosts=0)):
        for node in build_nodes(NamespaceModel("fish", mesh), []):
            assert files(cache, templates, node) == render_node(templates, node)
        cache.end_cycle()
