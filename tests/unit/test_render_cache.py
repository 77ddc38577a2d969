"""The render cache's one rule: renders are shared exactly when the per-node fields are unused."""

from __future__ import annotations

from configurator.conventions import NamespaceModel, RouteDecl, ServiceColor
from configurator.mesh import PER_NODE_FIELDS, NodeContext, build_nodes
from configurator.render import RenderCache, TemplateSet

SHARED_ONLY = TemplateSet({"lds.yaml": "ns: {{{namespace}}}\n"})
USES_NODE_ID = TemplateSet({"lds.yaml": "ns: {{{namespace}}}\nid: {{{node_id}}}\n"})


def sidecars(count: int, namespace: str = "fish") -> list[NodeContext]:
    colors = tuple(
        ServiceColor(f"svc{n}", "blue", False, (RouteDecl(f"/p{n}", False, 1),), ())
        for n in range(count)
    )
    return [n for n in build_nodes(NamespaceModel(namespace, colors), []) if not n.is_gateway]


def test_per_node_fields_are_the_only_difference_between_sidecars() -> None:
    """Sidecars of a namespace share one shared context; their contexts differ only there."""
    first, second = sidecars(2)
    assert first.shared is second.shared and first.shared_digest == second.shared_digest
    assert set(first.per_node) == set(PER_NODE_FIELDS)
    assert not set(first.shared) & set(PER_NODE_FIELDS)
    differing = {k for k in first.context if first.context[k] != second.context[k]}
    assert differing <= set(PER_NODE_FIELDS)


def test_templates_ignoring_per_node_fields_render_once_for_every_sidecar() -> None:
    """One probe render serves all sidecars with the same shared context and templates."""
    cache = RenderCache()
    files = {node.node_id: cache.render(SHARED_ONLY, node) for node in sidecars(20)}
    assert cache.renders == 1
    assert {f["lds.yaml"] for f in files.values()} == {b'ns: "fish"\n'}


def test_templates_using_a_per_node_field_render_each_node_with_its_own_values() -> None:
    """The probe shows node dependence: every node is rendered with its own node_id."""
    cache = RenderCache()
    nodes = sidecars(3)
    files = [cache.render(USES_NODE_ID, node)["lds.yaml"] for node in nodes]
    assert files == [f'ns: "fish"\nid: "{n.node_id}"\n'.encode() for n in nodes]
    assert cache.renders == 1 + 3  # the probe, then each node


def test_different_shared_contexts_never_share_a_render() -> None:
    """Another namespace (another shared digest) gets its own render."""
    cache = RenderCache()
    fish = cache.render(SHARED_ONLY, sidecars(1, "fish")[0])
    trout = cache.render(SHARED_ONLY, sidecars(1, "trout")[0])
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
