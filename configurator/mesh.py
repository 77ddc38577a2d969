"""Mesh: validated namespaces -> one template context per node.

A sidecar per service-color gets every public and private route of its namespace; the gateway of
a namespace routes the public ones and answers 404 for the private ones. A path declared by
several colors becomes one route with weighted clusters; routes are ordered longest prefix
first, catch-all last. A service with ``HOSTS`` has its routes in a virtual host of its own
(matched by the request's host, port ignored); every other service shares the ``*`` one.

Sidecars of a color with ``PEERS`` also reach other meshes: ``configurator.peers`` adds their
listeners and clusters on top of what is built here.

Every string in a context is a JSON scalar (``"\"/tuna\""``): templates insert it with triple
braces and whatever the string holds, it stays one YAML scalar. Numbers and flags are plain.
Contexts are documented field by field in docs/templates.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from configurator.conventions import CATCH_ALL, NamespaceModel, ServiceColor
from configurator.policies import ROUTE_FIELDS, ROUTE_KEYS, RoutePolicy, format_duration
from shared.digest import sha256_hex
from shared.models import Problem, gateway_node_id, sidecar_node_id
from shared.placeholders import ADMIN_PORT, CONFIG_DIR, LISTENER_PORT


def q(value: str) -> str:
    """A string as a JSON scalar, safe to insert into YAML or JSON templates."""
    return json.dumps(value)


PER_NODE_FIELDS = ("node_id", "service", "color", "service_member")
"""The only context fields that differ between sidecars with the same ``shared`` context (the
sidecars of a namespace with the same resolved peers, ``configurator.peers``).

Each is also an attribute of ``NodeContext``; ``NodeContext.context`` is ``shared`` plus these
fields (a gateway has no ``service`` or ``color``). Nothing else may vary per node: the render
cache (``render.RenderCache``) shares renders on that rule.
"""


@dataclass(frozen=True)
class ContextDigests:
    """Digests of a shared context: of each top-level field, of each entry of ``clusters``, and
    of the whole. The render cache keys each template's render by the fields it reads."""

    fields: dict[str, str]
    clusters: tuple[str, ...]
    whole: str


def _digest(value: Any) -> str:
    return sha256_hex(json.dumps(value, sort_keys=True).encode())


def digest_context(context: dict[str, Any]) -> ContextDigests:
    """The digests of ``context`` (each part serialised once)."""
    clusters = tuple(_digest(c) for c in context.get("clusters", ()))
    fields = {k: _digest(v) for k, v in context.items() if k != "clusters"}
    if "clusters" in context:
        fields["clusters"] = sha256_hex(" ".join(clusters).encode())
    return ContextDigests(fields, clusters, _digest(fields))


@dataclass(frozen=True)
class NodeContext:
    """The template context of one node, and where to look for its template overrides.

    ``shared`` is the context without its ``PER_NODE_FIELDS`` and ``digests`` identify it: every
    sidecar of a namespace with the same peers has the same ones (the same objects, built
    once). ``unavailable`` says why the node cannot be built this cycle (a peer namespace that
    failed to build): it keeps its previous files.
    """

    node_id: str
    namespace: str
    service: str | None
    color: str | None
    shared: dict[str, Any]
    digests: ContextDigests
    unavailable: str = ""

    @property
    def shared_digest(self) -> str:
        """The digest of the whole shared context."""
        return self.digests.whole

    @property
    def is_gateway(self) -> bool:
        return self.service is None

    @property
    def service_member(self) -> str:
        """nightjar-mesh's name for the node id (its templates use ``service_member``)."""
        return self.node_id

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
    header: tuple[str, str] | None = None
    policy: RoutePolicy = RoutePolicy()

    @property
    def label(self) -> str:
        """The route as an operator writes its key: ``/tuna`` or ``[header:x=1]/tuna``."""
        return (
            f"[header:{self.header[0]}={self.header[1]}]{self.path}" if self.header else self.path
        )


def cluster_name(sc: ServiceColor) -> str:
    """The Envoy cluster of a service-color (``/`` never occurs inside either part)."""
    return f"{sc.service}/{sc.color}"


def eds_file_name(cluster: str) -> str:
    """The bundle file holding a cluster's endpoints (one ClusterLoadAssignment per file)."""
    return f"eds-{sha256_hex(cluster.encode())[:16]}.yaml"


@dataclass(frozen=True)
class VirtualHost:
    """The routes of the services one set of host names reaches (``*``: the shared space)."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[_Route, ...]


DEFAULT_HOST = "mesh"


def assign_hosts(ns: NamespaceModel, problems: list[Problem]) -> dict[str, tuple[str, ...]]:
    """The hosts each service answers for: the union of its colors' HOSTS. Colors that disagree
    are reported; a host claimed by several services stays with the first by name (reported)."""
    by_service: dict[str, list[ServiceColor]] = {}
    for sc in sorted(ns.service_colors, key=cluster_name):
        by_service.setdefault(sc.service, []).append(sc)
    owner: dict[str, str] = {}
    assigned: dict[str, tuple[str, ...]] = {}
    for service, colors in sorted(by_service.items()):
        declared = {sc.hosts for sc in colors}
        wanted = sorted({host for sc in colors for host in sc.hosts})
        if len(declared) > 1:
            said = ", ".join(f"{cluster_name(sc)}: {','.join(sc.hosts) or '-'}" for sc in colors)
            problems.append(
                Problem(
                    where=ns.name,
                    item=f"service {service!r} HOSTS",
                    reason=f"colors disagree ({said}); the service answers for every host any"
                    " of its colors declares",
                )
            )
        kept = []
        for host in wanted:
            if host in owner:
                problems.append(
                    Problem(
                        where=ns.name,
                        item=f"host {host!r}",
                        reason=f"claimed by services {owner[host]!r} and {service!r}; it stays"
                        f" with {owner[host]!r} (first by name)",
                    )
                )
                continue
            owner[host] = service
            kept.append(host)
        if kept:
            assigned[service] = tuple(kept)
    return assigned


def split_virtual_hosts(ns: NamespaceModel, problems: list[Problem]) -> list[VirtualHost]:
    """The shared ``*`` virtual host first (services without hosts), then one per service
    with hosts, by service name. Route merging and ordering happen per virtual host."""
    hosts = assign_hosts(ns, problems)
    shared = tuple(sc for sc in ns.service_colors if sc.service not in hosts)
    virtual_hosts = [VirtualHost(DEFAULT_HOST, ("*",), _merged(ns.name, shared, problems))]
    for service, domains in sorted(hosts.items()):
        colors = tuple(sc for sc in ns.service_colors if sc.service == service)
        virtual_hosts.append(
            VirtualHost(f"hosts:{service}", domains, _merged(ns.name, colors, problems))
        )
    return virtual_hosts


def _merged(
    where: str, colors: tuple[ServiceColor, ...], problems: list[Problem]
) -> tuple[_Route, ...]:
    return tuple(merge_routes(NamespaceModel(where, colors), problems))


_Decl = tuple[ServiceColor, bool, int]
_RouteKey = tuple[str, tuple[str, str] | None]


def merge_routes(ns: NamespaceModel, problems: list[Problem]) -> list[_Route]:
    """One route per distinct path (and header match), most specific first, catch-all last."""
    by_key: dict[_RouteKey, list[_Decl]] = {}
    for sc in ns.service_colors:
        for decl in sc.routes:
            by_key.setdefault((decl.path, decl.header), []).append((sc, decl.private, decl.weight))
    routes = []
    for (path, header), decls in by_key.items():
        visibility = {private for _, private, _ in decls}
        weights = tuple(sorted((cluster_name(sc), w) for sc, _, w in decls))
        route = _Route(path, True in visibility, weights, header)
        if len(visibility) > 1:
            problems.append(
                Problem(
                    where=ns.name,
                    item=f"route {route.label!r}",
                    reason="declared public by some colors and private by others; kept private",
                )
            )
        routes.append(replace(route, policy=_route_policy(ns.name, route.label, decls, problems)))
    return sorted(routes, key=_route_order)


def _route_policy(
    where: str, label: str, decls: list[_Decl], problems: list[Problem]
) -> RoutePolicy:
    """The policy of the color with the largest weight on the route (ties: cluster name order);
    each route-level key the colors disagree on is a problem."""
    ranked = sorted(decls, key=lambda d: (-d[2], cluster_name(d[0])))
    winner = ranked[0][0]
    for key in ROUTE_KEYS:
        values = {getattr(sc.policies.route, ROUTE_FIELDS[key]) for sc, _, _ in decls}
        if len(values) > 1:
            said = ", ".join(
                f"{cluster_name(sc)}: {sc.policies.route.text(key)}" for sc, _, _ in ranked
            )
            problems.append(
                Problem(
                    where=where,
                    item=f"route {label!r} {key}",
                    reason=f"colors disagree ({said}); {cluster_name(winner)}'s value applies"
                    " (largest weight on the route, ties by cluster name)",
                )
            )
    return winner.policies.route


def _route_order(route: _Route) -> tuple[int, int, str, int, tuple[str, str]]:
    header = (0, route.header) if route.header else (1, ("", ""))
    if route.path == CATCH_ALL:
        return (1, 0, "", *header)
    return (0, -len(route.path), route.path, *header)


def _route_policy_context(policy: RoutePolicy) -> dict[str, Any]:
    retries, fault, limit = policy.retries, policy.fault, policy.rate_limit
    return {
        "timeout": q(format_duration(policy.timeout_ms)),
        "has_retry_policy": retries.num > 0,
        "retry_on": q(",".join(retries.on)),
        "num_retries": retries.num,
        "has_per_try_timeout": retries.per_try_ms is not None,
        "per_try_timeout": q(format_duration(retries.per_try_ms or 0)),
        "has_fault": fault is not None,
        "has_fault_delay": fault is not None and fault.delay_ms is not None,
        "fault_delay": q(format_duration(fault.delay_ms or 0) if fault else "0s"),
        "fault_delay_percent": fault.delay_percent if fault else 0,
        "has_fault_abort": fault is not None and fault.abort_status is not None,
        "fault_abort_status": (fault.abort_status or 0) if fault else 0,
        "fault_abort_percent": fault.abort_percent if fault else 0,
        "has_rate_limit": limit is not None,
        "rate_limit_tokens": limit.tokens if limit else 0,
        "rate_limit_fill_interval": q(format_duration(limit.interval_ms if limit else 0)),
        "has_per_filter_config": fault is not None or limit is not None,
    }


def _header_context(route: _Route) -> dict[str, Any]:
    filters = []
    if route.header:
        name, value = route.header
        filters.append(
            {
                "header_name": q(name),
                "header_value": q(value),
                # nightjar-mesh's header_filters fields
                "name": q(name),
                "match": q(value),
                "is_exact_match": True,
                "is_regex_match": False,
                "is_present_match": False,
                "is_prefix_match": False,
                "is_suffix_match": False,
                "invert_match": False,
                "case_sensitive": True,
            }
        )
    return {
        "has_header_match": bool(filters),
        "header_matches": filters,
        "has_header_filters": bool(filters),
        "header_filters": filters,
    }


def forward_route_context(cluster: str) -> dict[str, Any]:
    """One catch-all route sending everything to ``cluster`` with no route timeout (the
    upstream, another mesh's gateway, applies its own) and the default retries."""
    return _route_context(_Route(CATCH_ALL, False, ((cluster, 1),), policy=RoutePolicy(0)))


def route_contexts(
    vhost: VirtualHost, gateway: bool, cluster_prefix: str = ""
) -> list[dict[str, Any]]:
    """The routes of a virtual host as context; on a gateway private routes are blocked (404).
    ``cluster_prefix`` is put before every cluster name (another mesh's clusters)."""
    routes = vhost.routes
    if cluster_prefix:
        routes = tuple(
            replace(r, weights=tuple((cluster_prefix + n, w) for n, w in r.weights)) for r in routes
        )
    return [_route_context(r, blocked=gateway and r.private) for r in routes]


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
        **_header_context(route),
        **_route_policy_context(route.policy),
        # nightjar-mesh's names for the same facts
        "has_one_cluster": len(live) == 1,
        "path_is_prefix": True,
        "path_is_exact": False,
        "path_is_regex": False,
        "path_is_case_sensitive": True,
        "has_query_filters": False,
        "query_filters": [],
    }


def _cluster_policy_context(sc: ServiceColor) -> dict[str, Any]:
    policy = sc.policies.cluster
    check, outlier, limits = policy.health_check, policy.outlier, policy.limits
    context: dict[str, Any] = {
        "lb_policy": q(policy.lb),
        "connect_timeout": q(format_duration(policy.connect_timeout_ms)),
        "has_health_check": check is not None,
        "has_outlier_detection": outlier is not None,
        "has_circuit_breakers": limits is not None,
    }
    if check is not None:
        context["health_check"] = {
            "path": q(check.path),
            "interval": q(format_duration(check.interval_ms)),
            "timeout": q(format_duration(check.timeout_ms)),
            "healthy_threshold": check.healthy,
            "unhealthy_threshold": check.unhealthy,
        }
    if outlier is not None:
        context["outlier_detection"] = {
            "consecutive_5xx": outlier.consecutive_5xx,
            "interval": q(format_duration(outlier.interval_ms)),
            "base_ejection_time": q(format_duration(outlier.eject_ms)),
            "max_ejection_percent": outlier.max_percent,
        }
    if limits is not None:
        context["circuit_breakers"] = {
            "max_connections": limits.connections,
            "max_pending_requests": limits.pending,
            "max_requests": limits.requests,
            "max_retries": limits.retries,
        }
    return context


def cluster_context(
    sc: ServiceColor, name: str | None = None, peer_namespace: str = ""
) -> dict[str, Any]:
    """A cluster of ``sc``'s endpoints, named ``service/color`` unless ``name`` is given (a
    cluster of another mesh, ``peer_namespace``)."""
    name = name or cluster_name(sc)
    eds_file = eds_file_name(name)
    return {
        "cluster_name": q(name),
        "service": q(sc.service),
        "color": q(sc.color),
        "is_peer": bool(peer_namespace),
        "peer_namespace": q(peer_namespace),
        "uses_http2": sc.http2,
        "has_endpoints": bool(sc.endpoints),
        "endpoints": [
            {"host": q(ep.host), "port": ep.port, "is_last": n == len(sc.endpoints) - 1}
            for n, ep in enumerate(sc.endpoints)
        ],
        "eds_file": eds_file,
        "eds_path": q(f"${{{CONFIG_DIR}}}/current/{eds_file}"),
        "eds_watched_directory": q(f"${{{CONFIG_DIR}}}"),
        **_cluster_policy_context(sc),
        # nightjar-mesh's names for the same facts
        "name": q(name),
        "hosts_are_ipv4": True,
        "hosts_are_ipv6": False,
        "hosts_are_hostname": False,
    }


def virtual_host_context(
    name: str, domains: tuple[str, ...], routes: list[dict[str, Any]], is_default: bool
) -> dict[str, Any]:
    """A virtual host as context: its name, host names and route contexts."""
    return {
        "virtual_host_name": q(name),
        "is_default_host": is_default,
        "domains": [q(domain) for domain in domains],
        "domain_list": ", ".join(q(domain) for domain in domains),
        "has_routes": bool(routes),
        "routes": routes,
    }


def _virtual_host_context(vhost: VirtualHost, gateway: bool) -> dict[str, Any]:
    # A gateway must not serve private paths even when a shorter public prefix covers them
    # (?/tuna/admin under /tuna): they stay in their place in the order, answering 404.
    routes = route_contexts(vhost, gateway)
    return virtual_host_context(vhost.name, vhost.domains, routes, vhost.name == DEFAULT_HOST)


MAIN_PORT = f"${{{LISTENER_PORT}}}"  # the node's own listener: the fetcher's NJ_LISTENER_PORT


def listener_context(
    name: str,
    hosts: list[dict[str, Any]],
    port: str | int = MAIN_PORT,
    peer: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    """A listener as context: ``hosts`` are its virtual host contexts, the default one first;
    ``peer`` is ``(namespace, direct)`` for a listener reaching another mesh."""
    visible = hosts[0]["routes"] if hosts else []
    served = [r for vhost in hosts for r in vhost["routes"] if r["has_clusters"]]
    peer_namespace, direct = peer or ("", False)
    return {
        "listener_name": q(name),
        "stat_prefix": q(name.replace(":", "-")),
        "route_config_name": q(f"{name}-routes"),
        "port": port,
        "is_peer": peer is not None,
        "peer_namespace": q(peer_namespace),
        "peer_mode": q("" if peer is None else "direct" if direct else "gateway"),
        "is_direct": direct,
        "has_routes": bool(visible),
        "routes": visible,
        "virtual_hosts": hosts,
        "has_host_routing": len(hosts) > 1,
        "uses_fault_filter": any(r["has_fault"] for r in served),
        "uses_rate_limit_filter": any(r["has_rate_limit"] for r in served),
        # nightjar-mesh's names: the main port is filled per task by the fetcher
        "has_mesh_port": True,
        "mesh_port": port,
    }


def _shared_context(
    ns: NamespaceModel, virtual_hosts: list[VirtualHost], gateway: bool
) -> dict[str, Any]:
    name = "gateway" if gateway else "egress"
    hosts = [_virtual_host_context(vhost, gateway) for vhost in virtual_hosts]
    clusters = [cluster_context(sc) for sc in ns.service_colors]
    return {
        "namespace": q(ns.name),
        "is_gateway": gateway,
        "listeners": [listener_context(name, hosts)],
        "has_clusters": bool(clusters),
        "clusters": clusters,
        "has_peers": False,
        "peers": [],
        # nightjar-mesh's names (schema v1 of its proxy input)
        "network_name": q(ns.name),
        "has_admin_port": True,
        "admin_port": f"${{{ADMIN_PORT}}}",
    }


def digest(context: Any) -> str:
    """The sha256 of a context (or any JSON value), key order aside."""
    return sha256_hex(json.dumps(context, sort_keys=True).encode())


def build_nodes(
    ns: NamespaceModel,
    problems: list[Problem],
    virtual_hosts: list[VirtualHost] | None = None,
) -> list[NodeContext]:
    """Every node of a namespace: its gateway, then one sidecar per service-color.

    The sidecars share one context (same objects) apart from their per-node fields, so building
    and digesting them costs O(routes + clusters) once, not once per sidecar. ``virtual_hosts``
    are ``split_virtual_hosts(ns, ...)`` when the caller already has them (its problems then
    are the caller's to report).
    """
    if virtual_hosts is None:
        virtual_hosts = split_virtual_hosts(ns, problems)
    gateway = _shared_context(ns, virtual_hosts, True)
    gw = NodeContext(
        gateway_node_id(ns.name), ns.name, None, None, gateway, digest_context(gateway)
    )
    shared = _shared_context(ns, virtual_hosts, False)
    shared_digests = digest_context(shared)
    sidecars = [
        NodeContext(
            sidecar_node_id(ns.name, sc.service, sc.color),
            ns.name,
            sc.service,
            sc.color,
            shared,
            shared_digests,
        )
        for sc in ns.service_colors
    ]
    return [gw, *sidecars]
