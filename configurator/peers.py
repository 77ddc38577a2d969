"""Peers: the sidecars of one mesh reaching another mesh (``PEERS``), as template context.

This is the second half of the mesh stage: ``mesh`` builds each namespace's nodes on its own,
then the sidecars of a color with peers get, per peer mesh B, one more listener on their own
port and B's virtual hosts on their main listener (a ``Host`` of ``B`` or ``*.B``):

- through the gateway (default): every request goes to ``peer:B/gateway``, a cluster of B's
  gateway tasks (the instances of B's ``GATEWAY=yes`` service); B's gateway routes it.
- ``direct``: B's gateway routes, exactly as B's gateway node has them (public paths and
  weights, private paths answering 404, B's ``HOSTS`` virtual hosts), to ``peer:B/<service>/
  <color>`` clusters of B's tasks. Only the clusters those routes use are carried.

Everything checked here needs every namespace at once (``MeshDirectory``): a peer that is not
served, a peer without a gateway (default mode), a mesh naming itself, and a host of the
mesh's own ``HOSTS`` inside a peer namespace are problems; a peer namespace that failed to
build makes the sidecars peering with it keep their previous files.

Sidecars with the same resolved peers share one ``shared`` context; its digest is derived from
the base context's digest and the digests of what each peer exposes in that mode, so a change
in B changes only the contexts of B's nodes and of the sidecars whose listeners carry it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from configurator.conventions import NamespaceModel, Peer, ServiceColor
from configurator.mesh import (
    DEFAULT_HOST,
    ContextDigests,
    NodeContext,
    VirtualHost,
    build_nodes,
    cluster_context,
    digest,
    digest_context,
    forward_route_context,
    listener_context,
    q,
    route_contexts,
    split_virtual_hosts,
    virtual_host_context,
)
from shared.models import Problem, sidecar_node_id

SIDECAR_LISTENER = "egress"  # the main listener of every sidecar (mesh._shared_context)
PEER_PREFIX = "peer:"  # ':' never occurs in a service or color name: no clash with own clusters


@dataclass(frozen=True)
class Plan:
    """A namespace's virtual hosts, computed once per build, and the problems found doing so."""

    virtual_hosts: list[VirtualHost]
    problems: list[Problem]


_HostSpec = tuple[str, tuple[str, ...], list[dict[str, Any]]]  # name, domains, route contexts


@dataclass(frozen=True)
class Exposure:
    """What a mesh shows its peers, as context with cluster names of their own.

    ``gateway`` is the cluster of its gateway tasks (None: no gateway service) and
    ``forward`` the one route sending everything there; ``hosts`` are its gateway's virtual
    hosts and ``clusters`` the clusters their routes use. ``gateway_digest`` identifies what
    the gateway mode carries, ``direct_digest`` what the direct mode carries.
    """

    namespace: str
    gateway: dict[str, Any] | None
    forward: list[dict[str, Any]]
    hosts: list[_HostSpec]
    clusters: list[dict[str, Any]]
    gateway_digest: str
    direct_digest: str


@dataclass(frozen=True)
class ResolvedPeer:
    """A peer that gets a listener: the served namespace's own name, the port, the mode."""

    namespace: str
    port: int
    direct: bool


class MeshDirectory:
    """Every namespace the configurator serves, for the namespaces that peer with each other.

    ``models`` are the namespaces read this cycle; ``served`` every namespace the configurator
    serves (a served namespace missing from ``models`` failed to build). Plans and exposures
    are computed once per directory (one build).
    """

    def __init__(self, models: Mapping[str, NamespaceModel], served: Iterable[str]) -> None:
        self.models = dict(models)
        self.served = {name.lower(): name for name in served}
        self._plans: dict[str, Plan] = {}
        self._exposures: dict[str, Exposure] = {}

    @classmethod
    def of(cls, models: Iterable[NamespaceModel]) -> MeshDirectory:
        """A directory serving exactly ``models``."""
        found = {m.name: m for m in models}
        return cls(found, found)

    def plan(self, ns: NamespaceModel) -> Plan:
        """``ns``'s virtual hosts (``mesh.split_virtual_hosts``), computed once."""
        if ns.name not in self._plans:
            problems: list[Problem] = []
            self._plans[ns.name] = Plan(split_virtual_hosts(ns, problems), problems)
        return self._plans[ns.name]

    def exposure(self, name: str) -> Exposure:
        """What the served, built namespace ``name`` shows its peers, computed once."""
        if name not in self._exposures:
            model = self.models[name]
            self._exposures[name] = _expose(model, self.plan(model))
        return self._exposures[name]


def peer_cluster_prefix(namespace: str) -> str:
    """The start of every cluster name a sidecar has for the peer mesh ``namespace``."""
    return f"{PEER_PREFIX}{namespace}/"


def _expose(ns: NamespaceModel, plan: Plan) -> Exposure:
    prefix = peer_cluster_prefix(ns.name)
    gateway = forward = None
    if ns.gateway is not None:
        tasks = ServiceColor("gateway", "gateway", False, (), ns.gateway.endpoints)
        gateway = cluster_context(tasks, f"{prefix}gateway", ns.name)
        forward = [forward_route_context(f"{prefix}gateway")]
    hosts = [
        (vhost.name, vhost.domains, route_contexts(vhost, gateway=True, cluster_prefix=prefix))
        for vhost in plan.virtual_hosts
    ]
    used = {
        c["cluster_name"] for _, _, routes in hosts for route in routes for c in route["clusters"]
    }
    clusters = []
    for sc in ns.service_colors:
        context = cluster_context(sc, f"{prefix}{sc.service}/{sc.color}", ns.name)
        if context["cluster_name"] in used:
            clusters.append(context)
    return Exposure(
        ns.name,
        gateway,
        forward or [],
        hosts,
        clusters,
        digest([gateway, forward]),
        digest([hosts, clusters]),
    )


def build_linked_nodes(
    ns: NamespaceModel, problems: list[Problem], directory: MeshDirectory
) -> list[NodeContext]:
    """Every node of ``ns`` (``mesh.build_nodes``), with the peer listeners and clusters of
    each sidecar whose color has ``PEERS``."""
    plan = directory.plan(ns)
    problems.extend(plan.problems)
    nodes = build_nodes(ns, problems, plan.virtual_hosts)
    colors = {sidecar_node_id(ns.name, sc.service, sc.color): sc for sc in ns.service_colors}
    resolved: dict[str, tuple[tuple[ResolvedPeer, ...], str]] = {}
    for node_id, sc in colors.items():
        if sc.peers:
            resolved[node_id] = _resolve(ns.name, node_id, sc.peers, directory, problems)
    _report_host_collisions(ns, plan, colors, resolved, problems)
    groups: dict[tuple[ResolvedPeer, ...], tuple[dict[str, Any], ContextDigests]] = {}
    linked = []
    for node in nodes:
        peers, unavailable = resolved.get(node.node_id, ((), ""))
        if unavailable:
            linked.append(_replace(node, node.shared, node.digests, unavailable))
        elif peers:
            if peers not in groups:
                groups[peers] = _group_context(node, plan, peers, directory)
            linked.append(_replace(node, *groups[peers]))
        else:
            linked.append(node)
    return linked


def _replace(
    node: NodeContext, shared: dict[str, Any], digests: ContextDigests, why: str = ""
) -> NodeContext:
    return NodeContext(node.node_id, node.namespace, node.service, node.color, shared, digests, why)


def _resolve(
    own: str,
    node_id: str,
    peers: tuple[Peer, ...],
    directory: MeshDirectory,
    problems: list[Problem],
) -> tuple[tuple[ResolvedPeer, ...], str]:
    """The peers of one sidecar that get a listener (each other one is a problem), and why
    the sidecar cannot be built this cycle ("" when it can)."""
    kept = []
    for peer in peers:
        item = f"PEERS item {peer.label!r}"
        name = directory.served.get(peer.namespace)
        why = _refusal(own, peer, name, directory)
        if why:
            problems.append(Problem(where=node_id, item=item, reason=why + " — no listener"))
        elif name is not None and name not in directory.models:
            return (), f"peer namespace {name} failed to build this cycle (PEERS {peer.label})"
        elif name is not None:
            kept.append(ResolvedPeer(name, peer.port, peer.direct))
    return tuple(kept), ""


def _refusal(own: str, peer: Peer, name: str | None, directory: MeshDirectory) -> str:
    if peer.namespace == own.lower():
        return "a mesh does not peer with itself: its sidecars reach it on their main listener"
    if name is None:
        served = ", ".join(sorted(directory.served.values()))
        return (
            f"{peer.namespace} is not served by this configurator (NJ_NAMESPACES: {served}):"
            " serve it here too, or remove the peer"
        )
    if name in directory.models and not peer.direct:
        if directory.exposure(name).gateway is None:
            return (
                f"{name} has no gateway service (a Cloud Map service whose service-settings say"
                f" GATEWAY=yes): register its gateway there, or use {name}:{peer.port}:direct"
            )
    return ""


def within(host: str, namespace: str) -> bool:
    """Whether a host name (or ``*.`` wildcard) lies in ``namespace``: equal or a subdomain."""
    bare = host.removeprefix("*.")
    return bare == namespace or bare.endswith(f".{namespace}")


def _report_host_collisions(
    ns: NamespaceModel,
    plan: Plan,
    colors: Mapping[str, ServiceColor],
    resolved: Mapping[str, tuple[tuple[ResolvedPeer, ...], str]],
    problems: list[Problem],
) -> None:
    """A host of the mesh's own HOSTS inside a peer namespace: reported once per host and peer
    (the host stays with its service; the peer keeps its other names)."""
    peering: dict[str, list[str]] = {}
    for node_id, (peers, _) in resolved.items():
        for peer in peers:
            sc = colors[node_id]
            peering.setdefault(peer.namespace, []).append(f"{sc.service}/{sc.color}")
    for vhost in plan.virtual_hosts:
        if vhost.name == DEFAULT_HOST:
            continue
        service = vhost.name.removeprefix("hosts:")
        for host in vhost.domains:
            for name, who in sorted(peering.items()):
                if within(host, name.lower()):
                    problems.append(
                        Problem(
                            where=ns.name,
                            item=f"host {host!r}",
                            reason=f"HOSTS of service {service!r} collides with the peer"
                            f" namespace {name} (PEERS of {', '.join(who)}): on those sidecars"
                            f" {host} stays with {service!r} and {name} is reached by its"
                            " other names",
                        )
                    )


def _group_context(
    node: NodeContext, plan: Plan, peers: tuple[ResolvedPeer, ...], directory: MeshDirectory
) -> tuple[dict[str, Any], ContextDigests]:
    """The shared context of every sidecar of a namespace with these peers, and its digests."""
    base = node.shared
    main = base["listeners"][0]
    taken = {domain for vhost in plan.virtual_hosts for domain in vhost.domains}
    hosts = list(main["virtual_hosts"])
    listeners = []
    clusters = list(base["clusters"])
    for peer in peers:
        exposed = directory.exposure(peer.namespace)
        hosts.extend(_main_hosts(exposed, peer.direct, taken))
        listeners.append(_peer_listener(exposed, peer))
        if peer.direct:
            clusters.extend(exposed.clusters)
        elif exposed.gateway is not None:
            clusters.append(exposed.gateway)
    shared = {
        **base,
        "listeners": [listener_context(SIDECAR_LISTENER, hosts), *listeners],
        "has_clusters": bool(clusters),
        "clusters": clusters,
        "has_peers": True,
        "peers": [_peer_context(peer) for peer in peers],
    }
    return shared, digest_context(shared)


def _peer_context(peer: ResolvedPeer) -> dict[str, Any]:
    return {
        "peer_namespace": q(peer.namespace),
        "peer_port": peer.port,
        "peer_mode": q("direct" if peer.direct else "gateway"),
        "is_direct": peer.direct,
        "listener_name": q(f"{PEER_PREFIX}{peer.namespace}"),
    }


def _peer_listener(exposed: Exposure, peer: ResolvedPeer) -> dict[str, Any]:
    """The listener on the peer's own port: B's gateway virtual hosts (direct), else one
    virtual host sending everything to B's gateway tasks."""
    name = f"{PEER_PREFIX}{peer.namespace}"
    if peer.direct:
        hosts = [
            virtual_host_context(f"{name}/{vhost}", domains, routes, vhost == DEFAULT_HOST)
            for vhost, domains, routes in exposed.hosts
        ]
    else:
        hosts = [virtual_host_context(name, ("*",), exposed.forward, False)]
    return listener_context(name, hosts, peer.port, (peer.namespace, peer.direct))


def _main_hosts(exposed: Exposure, direct: bool, taken: set[str]) -> list[dict[str, Any]]:
    """The virtual hosts a peer adds to the main listener: ``B`` and ``*.B`` (and, direct,
    B's own HOSTS names inside B), each name only if nothing on the listener has it yet."""
    ns = exposed.namespace
    name = f"{PEER_PREFIX}{ns}"
    own = (ns.lower(), f"*.{ns.lower()}")
    specs: list[_HostSpec] = []
    if direct:
        for vhost, domains, routes in exposed.hosts:
            if vhost != DEFAULT_HOST:
                inside = tuple(d for d in domains if within(d, ns.lower()))
                specs.append((f"{name}/{vhost}", inside, routes))
        default = next(routes for vhost, _, routes in exposed.hosts if vhost == DEFAULT_HOST)
        specs.append((f"{name}/{DEFAULT_HOST}", own, default))
    else:
        specs.append((name, own, exposed.forward))
    hosts = []
    for vhost, domains, routes in specs:
        free = tuple(d for d in domains if d not in taken)
        taken.update(free)
        if free:
            hosts.append(virtual_host_context(vhost, free, routes, False))
    return hosts
