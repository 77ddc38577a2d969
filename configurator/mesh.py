"""Mesh: validated namespaces -> one template context per node.

A sidecar per service-color gets every public and private route of its namespace; the gateway of
a namespace routes the public ones and answers 404 for the private ones. A path declared by
several colors becomes one route with weighted clusters; routes are ordered longest prefix
first, catch-all last.

Every string in a context is a JSON scalar (``"\"/tuna\""``): templates insert it with triple
braces and whatever the string holds, it stays one YAML scalar. Numbers and flags are plain.
Contexts are documented field by field in docs/templates.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from configurator.conventions import CATCH_ALL, NamespaceModel, ServiceColor
from shared.digest import sha256_hex
from shared.models import Problem, gateway_node_id, sidecar_node_id

CONNECT_TIMEOUT = "2s"


def q(value: str) -> str:
    """A string as a JSON scalar, safe to insert into YAML or JSON templates."""
    return json.dumps(value)


PER_NODE_FIELDS = ("node_id", "service", "color")
"""The only context fields that differ between the sidecars of a namespace.

Each is also an attribute of ``NodeContext``; ``NodeContext.context`` is ``shared`` plus these
fields (a gateway has no ``service`` or ``color``). Nothing else may vary per node: the render
cache (``render.RenderCache``) shares renders on that rule.
"""


@dataclass(frozen=True)
class NodeContext:
    """The template context of one node, and where to look for its template overrides.

    ``shared`` is the context without its ``PER_NODE_FIELDS`` and ``shared_digest`` identifies
    it: every sidecar of a namespace has the same ones (the same dict object, built once).
    """

    node_id: str
    namespace: str
    service: str | None
    color: str | None
    shared: dict[str, Any]
    shared_digest: str

    @property
    def is_gateway(self) -> bool:
        return self.service is None

    @property
    def per_node(self) -> dict[str, Any]:
        """This node's ``PER_NODE_FIELDS`` as context values (JSON scalars)."""
        values = ((f, getattr(self, f)) for f in PER_NODE_FIELDS)
        return {f: q(value) for f, value in values if value is not None}

    @property
    def context(self) -> dict[str, Any]:
        """The full template context: the shared fields and this node's own."""
        return {**self.shared, **self.per_node}


@dataclass(frozen=True)
class _Route:
    path: str
    private: bool
    weights: tuple[tuple[str, int], ...]  # (cluster name, weight) in cluster-name order


def cluster_name(sc: ServiceColor) -> str:
    """The Envoy cluster of a service-color (``/`` never occurs inside either part)."""
    return f"{sc.service}/{sc.color}"


def merge_routes(ns: NamespaceModel, problems: list[Problem]) -> list[_Route]:
    """One route per distinct path, most specific first, catch-all last."""
    by_path: dict[str, list[tuple[ServiceColor, bool, int]]] = {}
    for sc in ns.service_colors:
        for decl in sc.routes:
            by_path.setdefault(decl.path, []).append((sc, decl.private, decl.weight))
    routes = []
    for path, decls in by_path.items():
        visibility = {private for _, private, _ in decls}
        if len(visibility) > 1:
            problems.append(
                Problem(
                    where=ns.name,
                    item=f"route {path!r}",
                    reason="declared public by some colors and private by others; kept private",
                )
            )
        weights = tuple(sorted((cluster_name(sc), w) for sc, _, w in decls))
        routes.append(_Route(path, True in visibility, weights))
    return sorted(routes, key=_route_order)


def _route_order(route: _Route) -> tuple[int, int, str]:
    if route.path == CATCH_ALL:
        return (1, 0, "")
    return (0, -len(route.path), route.path)


def _route_context(route: _Route, blocked: bool = False) -> dict[str, Any]:
    live = [] if blocked else [(name, weight) for name, weight in route.weights if weight > 0]
    return {
        "route_path": q("/" if route.path == CATCH_ALL else route.path),
        "is_catch_all": route.path == CATCH_ALL,
        "is_private": route.private,
        "is_blocked": blocked,
        "has_clusters": bool(live),
        "has_many_clusters": len(live) > 1,
        "total_cluster_weight": sum(weight for _, weight in live),
        "clusters": [{"cluster_name": q(name), "route_weight": weight} for name, weight in live],
    }


def _cluster_context(sc: ServiceColor) -> dict[str, Any]:
    return {
        "cluster_name": q(cluster_name(sc)),
        "service": q(sc.service),
        "color": q(sc.color),
        "uses_http2": sc.http2,
        "connect_timeout": q(CONNECT_TIMEOUT),
        "has_endpoints": bool(sc.endpoints),
        "endpoints": [{"host": q(ep.host), "port": ep.port} for ep in sc.endpoints],
    }


def _shared_context(ns: NamespaceModel, routes: list[_Route], gateway: bool) -> dict[str, Any]:
    name = "gateway" if gateway else "egress"
    # A gateway must not serve private paths even when a shorter public prefix covers them
    # (?/tuna/admin under /tuna): they stay in their place in the order, answering 404.
    visible = [_route_context(r, blocked=gateway and r.private) for r in routes]
    clusters = [_cluster_context(sc) for sc in ns.service_colors]
    return {
        "namespace": q(ns.name),
        "is_gateway": gateway,
        "listeners": [
            {
                "listener_name": q(name),
                "stat_prefix": q(name),
                "route_config_name": q(f"{name}-routes"),
                "has_routes": bool(visible),
                "routes": visible,
            }
        ],
        "has_clusters": bool(clusters),
        "clusters": clusters,
    }


def _digest(context: dict[str, Any]) -> str:
    return sha256_hex(json.dumps(context, sort_keys=True).encode())


def build_nodes(ns: NamespaceModel, problems: list[Problem]) -> list[NodeContext]:
    """Every node of a namespace: its gateway, then one sidecar per service-color.

    The sidecars share one context (same objects) apart from their per-node fields, so building
    and digesting them costs O(routes + clusters) once, not once per sidecar.
    """
    routes = merge_routes(ns, problems)
    gateway = _shared_context(ns, routes, True)
    gw = NodeContext(gateway_node_id(ns.name), ns.name, None, None, gateway, _digest(gateway))
    shared = _shared_context(ns, routes, False)
    shared_digest = _digest(shared)
    sidecars = [
        NodeContext(
            sidecar_node_id(ns.name, sc.service, sc.color),
            ns.name,
            sc.service,
            sc.color,
            shared,
            shared_digest,
        )
        for sc in ns.service_colors
    ]
    return [gw, *sidecars]
