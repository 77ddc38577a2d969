"""App Mesh definitions -> nightjar ``service-settings`` attributes, and what cannot be carried.

Pure functions over the App Mesh API's describe shapes (camelCase, as ``aws appmesh
describe-*`` prints them). The rules are documented in docs/migrating-from-app-mesh.md:

- a virtual node with ``serviceDiscovery.awsCloudMap`` is a service-color of that Cloud Map
  service; SERVICE comes from the virtual service routing to it, COLOR from the node's name;
- a virtual service is ``HOSTS`` (its name) plus path keys: its router's routes, weighted by
  ``weightedTargets`` (a virtual node provider: ``/`` on that node);
- a path no gateway route reaches is private; http2/grpc listeners set ``HTTP2``; retry
  policy, timeouts, health check, outlier detection and connection pool become policy keys.

Everything else is a ``Loss``: the resource, the feature, and what happens without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROUTE_KINDS = ("httpRoute", "http2Route", "grpcRoute")
HTTP_RETRY_EVENTS = {
    "server-error": ("5xx",),
    "gateway-error": ("gateway-error", "reset"),  # App Mesh includes Envoy's reset in both
    "client-error": ("retriable-4xx",),
    "stream-error": ("refused-stream",),
}
TCP_RETRY_EVENTS = {"connection-error": ("connect-failure",)}
HTTP2_PROTOCOLS = {"http2", "grpc"}
MAX_ATTRIBUTES = 30  # Cloud Map's limit per instance, AWS_INSTANCE_IPV4/PORT included
ANCHOR_ATTRIBUTES = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "1"}
UNTARGETED_COLOR = "main"


@dataclass(frozen=True)
class Loss:
    """An App Mesh feature nightjar cannot express: where, what, and what happens instead."""

    resource: str
    feature: str
    lost: str


@dataclass(frozen=True)
class AppMeshDefinitions:
    """One mesh's resources, each the object a describe call returns (``virtualNode`` ...)."""

    mesh: str
    virtual_nodes: tuple[dict[str, Any], ...] = ()
    virtual_services: tuple[dict[str, Any], ...] = ()
    virtual_routers: tuple[dict[str, Any], ...] = ()
    routes: tuple[dict[str, Any], ...] = ()
    virtual_gateways: tuple[dict[str, Any], ...] = ()
    gateway_routes: tuple[dict[str, Any], ...] = ()
    read_losses: tuple[Loss, ...] = ()  # found while reading the input (unresolved values)


@dataclass(frozen=True)
class ServiceSettings:
    """The ``service-settings`` instance one virtual node becomes."""

    namespace: str
    cloud_map_service: str
    virtual_node: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class ImportPlan:
    """What to register in Cloud Map, and every feature that does not survive."""

    mesh: str
    settings: tuple[ServiceSettings, ...]
    losses: tuple[Loss, ...]


_PathKey = tuple[str, tuple[str, str] | None]  # (path prefix, exact header match)


@dataclass
class _Color:
    node: str
    namespace: str
    cloud_map_service: str
    http2: bool
    service: str | None = None
    color: str | None = None
    hosts: set[str] = field(default_factory=set)
    paths: dict[_PathKey, tuple[int, str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    policy_source: dict[str, str] = field(default_factory=dict)


def millis(duration: dict[str, Any] | None) -> int | None:
    """An App Mesh ``Duration`` (``{"unit": "s"|"ms", "value": n}``) in milliseconds."""
    if not duration or "value" not in duration:
        return None
    return int(duration["value"]) * (1000 if duration.get("unit", "ms") == "s" else 1)


def duration_text(ms: int) -> str:
    """Milliseconds in nightjar's duration form (``2s``, ``250ms``), capped at 3600 s."""
    ms = min(ms, 3_600_000)
    return f"{ms // 1000}s" if ms % 1000 == 0 and ms else f"{ms}ms"


def route_spec(spec: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(kind, body)`` of an HTTP-family route spec, or None (a TCP route)."""
    return next(((k, spec[k]) for k in ROUTE_KINDS if spec.get(k)), None)


class _Planner:
    def __init__(self, defs: AppMeshDefinitions) -> None:
        self.defs = defs
        self.losses: list[Loss] = []
        self.colors: dict[str, _Color] = {}
        self.services: dict[str, str] = {}  # SERVICE -> virtual service name

    def lose(self, resource: str, feature: str, lost: str) -> None:
        self.losses.append(Loss(resource, feature, lost))

    # -- virtual nodes ------------------------------------------------------------------
    def read_nodes(self) -> None:
        taken: dict[tuple[str, str], str] = {}
        for node in sorted(self.defs.virtual_nodes, key=lambda n: n["virtualNodeName"]):
            color = self.read_node(node)
            if color is None:
                continue
            where = (color.namespace, color.cloud_map_service)
            if where in taken:
                self.lose(
                    f"virtual node {color.node}",
                    "shared Cloud Map service",
                    f"{where[1]} in {where[0]} is already virtual node {taken[where]}'s; a Cloud"
                    " Map service is one service-color, so this node is not imported",
                )
                continue
            taken[where] = color.node
            self.colors[color.node] = color

    def read_node(self, node: dict[str, Any]) -> _Color | None:
        name, spec = node["virtualNodeName"], node.get("spec") or {}
        where = f"virtual node {name}"
        discovery = (spec.get("serviceDiscovery") or {}).get("awsCloudMap")
        if not discovery:
            kind = "DNS" if (spec.get("serviceDiscovery") or {}).get("dns") else "no"
            self.lose(
                where,
                f"{kind} service discovery",
                "nightjar finds endpoints in Cloud Map only: register the tasks in a Cloud Map"
                " service (ECS serviceRegistries) and give the node awsCloudMap discovery;"
                " the node is not imported",
            )
            return None
        if discovery.get("attributes"):
            self.lose(
                where,
                "awsCloudMap.attributes",
                "nightjar routes to every instance of the Cloud Map service, not only those"
                " with matching attributes",
            )
        listeners = spec.get("listeners") or []
        listener = listeners[0] if listeners else {}
        protocol = (listener.get("portMapping") or {}).get("protocol", "http")
        if protocol == "tcp":
            self.lose(where, "TCP listener", "nightjar routes HTTP only; the node is not imported")
            return None
        color = _Color(
            name,
            discovery["namespaceName"],
            discovery["serviceName"],
            protocol in HTTP2_PROTOCOLS,
        )
        if len(listeners) > 1:
            self.lose(where, "several listeners", "only the first listener's settings are used")
        self.read_listener(where, listener, color)
        self.read_node_extras(where, spec)
        return color

    def read_listener(self, where: str, listener: dict[str, Any], color: _Color) -> None:
        if listener.get("tls"):
            self.lose(where, "listener TLS", "nightjar's sidecars talk plain HTTP to each other")
        self.read_health_check(where, listener.get("healthCheck"), listener, color)
        self.read_outlier(listener.get("outlierDetection"), color)
        self.read_pool(listener.get("connectionPool"), color)
        for kind, timeout in (listener.get("timeout") or {}).items():
            if (timeout or {}).get("idle"):
                self.lose(where, f"{kind} idle timeout", "Envoy's default idle timeout applies")
            per_request = millis((timeout or {}).get("perRequest"))
            if per_request is not None:
                color.policies["TIMEOUT"] = "0" if per_request == 0 else duration_text(per_request)
                color.policy_source["TIMEOUT"] = where

    def read_health_check(
        self, where: str, check: dict[str, Any] | None, listener: dict[str, Any], color: _Color
    ) -> None:
        if not check:
            return
        port = (listener.get("portMapping") or {}).get("port")
        if check.get("protocol") not in ("http", "http2") or not check.get("path"):
            self.lose(where, f"{check.get('protocol')} health check", "no active health check")
            return
        if check.get("port") not in (None, port):
            self.lose(where, "health check port", "nightjar checks each endpoint's own port")
        color.policies["HEALTH_CHECK"] = (
            f"{check['path']} interval={duration_text(int(check['intervalMillis']))}"
            f" timeout={duration_text(int(check['timeoutMillis']))}"
            f" healthy={check['healthyThreshold']} unhealthy={check['unhealthyThreshold']}"
        )

    def read_outlier(self, outlier: dict[str, Any] | None, color: _Color) -> None:
        if not outlier:
            return
        color.policies["OUTLIER"] = (
            f"5xx={min(int(outlier['maxServerErrors']), 1000)}"
            f" interval={duration_text(millis(outlier['interval']) or 10_000)}"
            f" eject={duration_text(millis(outlier['baseEjectionDuration']) or 30_000)}"
            f" max={int(outlier['maxEjectionPercent'])}%"
        )

    def read_pool(self, pool: dict[str, Any] | None, color: _Color) -> None:
        parts = {}
        for limits in (pool or {}).values():
            limits = limits or {}
            for source, target in (
                ("maxConnections", "connections"),
                ("maxPendingRequests", "pending"),
                ("maxRequests", "requests"),
            ):
                if source in limits:
                    parts[target] = min(int(limits[source]), 10**8)
        if parts:
            color.policies["LIMITS"] = " ".join(f"{k}={v}" for k, v in sorted(parts.items()))

    def read_node_extras(self, where: str, spec: dict[str, Any]) -> None:
        if spec.get("backends"):
            self.lose(
                where,
                "backends allow-list",
                "every sidecar of a nightjar mesh reaches every service of the mesh",
            )
        if (spec.get("backendDefaults") or {}).get("clientPolicy") or any(
            (b.get("virtualService") or {}).get("clientPolicy") for b in spec.get("backends") or []
        ):
            self.lose(where, "client policy TLS", "sidecars call upstreams in plain HTTP")
        if (spec.get("logging") or {}).get("accessLog"):
            self.lose(where, "access log file", "nightjar's Envoy logs JSON to stdout")

    # -- virtual services, routers, routes -----------------------------------------------
    def read_services(self) -> None:
        for vs in sorted(self.defs.virtual_services, key=lambda v: v["virtualServiceName"]):
            self.read_service(vs)

    def read_service(self, vs: dict[str, Any]) -> None:
        host = vs["virtualServiceName"]
        where = f"virtual service {host}"
        provider = (vs.get("spec") or {}).get("provider") or {}
        service = self.service_name(host)
        if provider.get("virtualNode"):
            node = provider["virtualNode"]["virtualNodeName"]
            self.target(where, service, host, node, ("/", None), 1, "virtual node provider")
        elif provider.get("virtualRouter"):
            router = provider["virtualRouter"]["virtualRouterName"]
            routes = [r for r in self.defs.routes if r.get("virtualRouterName") == router]
            for route in sorted(routes, key=_route_order):
                self.read_route(service, host, route)
        else:
            self.lose(where, "no provider", "nothing answers for it; not imported")

    def service_name(self, host: str) -> str:
        short = host.split(".", 1)[0]
        name = short if self.services.get(short, host) == host else host
        self.services[name] = host
        return name

    def read_route(self, service: str, host: str, route: dict[str, Any]) -> None:
        where = f"route {route['virtualRouterName']}/{route['routeName']}"
        spec = route.get("spec") or {}
        found = route_spec(spec)
        if found is None:
            self.lose(where, "TCP route", "nightjar routes HTTP only; the route is not imported")
            return
        kind, body = found
        if spec.get("priority") is not None:
            self.lose(
                where,
                "route priority",
                "nightjar orders routes by specificity: longest prefix first, a header route"
                " before the same path without one",
            )
        key = self.match_key(where, kind, body.get("match") or {})
        if key is None:
            return
        targets = (body.get("action") or {}).get("weightedTargets") or []
        for target in targets:
            weight = int(target.get("weight", 0))
            self.target(
                where, service, host, target["virtualNode"], key, weight, route["routeName"]
            )
        self.read_route_policy(where, kind, body, [t["virtualNode"] for t in targets])

    def match_key(
        self, where: str, kind: str, match: dict[str, Any]
    ) -> tuple[str, tuple[str, str] | None] | None:
        """The nightjar path (and header) of a route match, or None when it cannot be
        expressed (a narrower match imported as a wider one would steal traffic)."""
        if kind == "grpcRoute":
            return self.grpc_key(where, match)
        dropped = [f for f in ("method", "scheme", "queryParameters") if match.get(f)]
        path = match.get("prefix")
        exact = (match.get("path") or {}).get("exact")
        if (match.get("path") or {}).get("regex"):
            dropped.append("path regex")
        header = self.header_match(match.get("headers") or [], dropped)
        if dropped:
            self.lose(
                where,
                " and ".join(f"{d} match" for d in dropped),
                "nightjar matches a path prefix and at most one exact header; the route is"
                " not imported (as a wider route it would take other requests)",
            )
            return None
        if exact is not None:
            self.lose(where, "exact path", f"{exact!r} becomes a prefix match")
            path = exact
        return (path or "/"), header

    def header_match(
        self, headers: list[dict[str, Any]], dropped: list[str]
    ) -> tuple[str, str] | None:
        if not headers:
            return None
        first = headers[0]
        exact = (first.get("match") or {}).get("exact")
        if len(headers) > 1 or first.get("invert") or exact is None:
            dropped.append("header (other than one exact, non-inverted)")
            return None
        return str(first["name"]).lower(), str(exact)

    def grpc_key(self, where: str, match: dict[str, Any]) -> tuple[str, None] | None:
        if match.get("metadata"):
            self.lose(where, "gRPC metadata match", "the route is not imported")
            return None
        service, method = match.get("serviceName"), match.get("methodName")
        if method:
            self.lose(where, "gRPC method match", f"becomes the prefix /{service}/{method}")
            return f"/{service}/{method}", None
        return (f"/{service}/" if service else "/"), None

    def read_route_policy(
        self, where: str, kind: str, body: dict[str, Any], nodes: list[str]
    ) -> None:
        found: dict[str, str] = {}
        retry = body.get("retryPolicy")
        if retry:
            events = self.retry_events(where, retry)
            count = min(int(retry.get("maxRetries", 0)), 10)
            text = f"{count} on={','.join(events)}"
            per_try = millis(retry.get("perRetryTimeout"))
            if per_try:
                text += f" per-try={duration_text(per_try)}"
            found["RETRIES"] = text if events and count else "0"
        timeout = body.get("timeout") or {}
        if timeout.get("idle"):
            self.lose(where, f"{kind} idle timeout", "Envoy's default idle timeout applies")
        per_request = millis(timeout.get("perRequest"))
        if per_request is not None:
            found["TIMEOUT"] = "0" if per_request == 0 else duration_text(per_request)
        for node in nodes:
            if node in self.colors:
                self.set_route_policies(where, self.colors[node], found)

    def retry_events(self, where: str, retry: dict[str, Any]) -> list[str]:
        events: list[str] = []
        for name in retry.get("httpRetryEvents") or []:
            events.extend(HTTP_RETRY_EVENTS.get(name, ()))
        for name in retry.get("tcpRetryEvents") or []:
            events.extend(TCP_RETRY_EVENTS.get(name, ()))
        if retry.get("grpcRetryEvents"):
            self.lose(
                where,
                "gRPC retry events",
                f"{', '.join(retry['grpcRetryEvents'])} are not retried (nightjar retries on"
                " HTTP/TCP events only)",
            )
        if int(retry.get("maxRetries", 0)) > 10:
            self.lose(where, "maxRetries above 10", "nightjar retries at most 10 times")
        return sorted(set(events), key=events.index)

    def set_route_policies(self, where: str, color: _Color, found: dict[str, str]) -> None:
        for key, value in found.items():
            source = color.policy_source.get(key)
            if source and source.startswith("route ") and color.policies[key] != value:
                self.lose(
                    where,
                    f"{key} differing between routes",
                    f"nightjar's {key} is per color: {color.node} keeps {source}'s"
                    f" {color.policies[key]!r}, not {value!r}",
                )
                continue
            color.policies[key], color.policy_source[key] = value, where

    def target(
        self,
        where: str,
        service: str,
        host: str,
        node: str,
        key: tuple[str, tuple[str, str] | None],
        weight: int,
        source: str,
    ) -> None:
        color = self.colors.get(node)
        if color is None:
            self.lose(where, f"target {node}", "the virtual node is not imported (see above)")
            return
        if color.service not in (None, service):
            self.lose(
                where,
                f"target {node} of a second virtual service",
                f"a service-color has one SERVICE: {node} stays in {color.service}; this"
                f" target ({weight}) is dropped",
            )
            return
        color.service = service
        color.hosts.add(host)
        if key in color.paths:
            self.lose(
                where,
                f"path {key[0]} on {node} declared twice",
                f"the first route ({color.paths[key][1]}) keeps its weight",
            )
            return
        color.paths[key] = (weight, source)

    # -- gateways ----------------------------------------------------------------------
    def gateway_prefixes(self) -> dict[str, list[str]]:
        """Virtual service -> the path prefixes its gateway routes let in (after rewrites)."""
        reached: dict[str, list[str]] = {}
        if len(self.defs.virtual_gateways) > 1:
            self.lose(
                f"mesh {self.defs.mesh}",
                "several virtual gateways",
                "each namespace has one gateway node serving every public path",
            )
        for gateway in self.defs.virtual_gateways:
            for listener in (gateway.get("spec") or {}).get("listeners") or []:
                if listener.get("tls"):
                    name = gateway["virtualGatewayName"]
                    self.lose(f"virtual gateway {name}", "listener TLS", "terminate TLS in front")
        for route in sorted(self.defs.gateway_routes, key=lambda r: r["gatewayRouteName"]):
            found = self.gateway_route(route)
            if found is not None:
                reached.setdefault(found[0], []).append(found[1])
        return reached

    def gateway_route(self, route: dict[str, Any]) -> tuple[str, str] | None:
        where = f"gateway route {route['virtualGatewayName']}/{route['gatewayRouteName']}"
        spec = route.get("spec") or {}
        found = route_spec(spec)
        if found is None:
            return None
        kind, body = found
        target = ((body.get("action") or {}).get("target") or {}).get("virtualService") or {}
        host = target.get("virtualServiceName")
        if host is None:
            return None
        match = body.get("match") or {}
        for extra in ("headers", "method", "queryParameters", "metadata"):
            if match.get(extra):
                self.lose(where, f"{extra} match", "the gateway admits the path without it")
        if spec.get("priority") is not None:
            self.lose(where, "gateway route priority", "routes are ordered by specificity")
        self.gateway_hosts(where, host, match.get("hostname") or {})
        if kind == "grpcRoute":
            return host, "/"
        return host, self.gateway_prefix(where, match, (body.get("action") or {}).get("rewrite"))

    def gateway_hosts(self, where: str, host: str, hostname: dict[str, Any]) -> None:
        names = [hostname["exact"]] if hostname.get("exact") else []
        if hostname.get("suffix"):
            names.append("*." + str(hostname["suffix"]).lstrip("*."))
        for color in self.colors.values():
            if host in color.hosts:
                color.hosts.update(names)
        if not names:
            self.lose(
                where,
                "any-host gateway match",
                f"App Mesh sent requests for any Host to {host}; nightjar's gateway routes it by"
                f" Host: clients must send 'Host: {host}' or add their host name to HOSTS",
            )

    def gateway_prefix(
        self, where: str, match: dict[str, Any], rewrite: dict[str, Any] | None
    ) -> str:
        rewrite = rewrite or {}
        prefix = match.get("prefix") or (match.get("path") or {}).get("exact") or "/"
        if (rewrite.get("path") or {}).get("exact"):
            effective = rewrite["path"]["exact"]
        elif (rewrite.get("prefix") or {}).get("value"):
            effective = rewrite["prefix"]["value"]
        elif (rewrite.get("prefix") or {}).get("defaultPrefix") == "DISABLED":
            effective = prefix
        else:
            effective = "/"  # App Mesh's default: the matched prefix becomes '/'
        if effective != prefix:
            self.lose(
                where,
                "path rewrite",
                f"App Mesh rewrote {prefix!r} to {effective!r}; nightjar's gateway forwards the"
                f" path unchanged: clients must call the service's own paths ({effective!r}...)",
            )
        return str(effective)

    # -- result ------------------------------------------------------------------------
    def settings(self, reached: dict[str, list[str]]) -> list[ServiceSettings]:
        result = []
        used: set[tuple[str, str, str]] = set()
        declared: dict[str, set[_PathKey]] = {}
        for color in self.colors.values():
            declared.setdefault(color.service or color.node, set()).update(color.paths)
        for color in sorted(self.colors.values(), key=lambda c: c.node):
            service = color.service or color.node
            name = self.color_name(color, service)
            if (color.namespace, service, name) in used:
                name = color.node
            used.add((color.namespace, service, name))
            public = reached.get(self.services.get(service, ""), [])
            attributes = {
                "SERVICE": service,
                "COLOR": name,
                **self.attributes(color, public, declared[service]),
            }
            self.check_size(color.node, attributes)
            result.append(
                ServiceSettings(color.namespace, color.cloud_map_service, color.node, attributes)
            )
        return result

    def color_name(self, color: _Color, service: str) -> str:
        if color.service is None:
            return UNTARGETED_COLOR
        short = service.split(".", 1)[0]
        rest = color.node.removeprefix(f"{short}-")
        return rest or color.node

    def attributes(
        self, color: _Color, public: list[str], declared: set[_PathKey]
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        if color.hosts:
            out["HOSTS"] = ",".join(sorted(color.hosts))
        if color.http2:
            out["HTTP2"] = "yes"
        for (path, header), weight in sorted(self.paths(color, public, declared).items()):
            private = not any(path.startswith(prefix) for prefix in public)
            out[path_key(path, private, header)] = str(weight)
        return {**out, **dict(sorted(color.policies.items()))}

    def paths(
        self, color: _Color, public: list[str], declared: set[_PathKey]
    ) -> dict[_PathKey, int]:
        """The color's paths, plus each gateway prefix narrower than the route it falls in
        (``/color`` under ``/``): public with that route's weight, while the route itself
        stays private, so the gateway admits exactly what App Mesh's gateway routes did."""
        paths = {key: weight for key, (weight, _) in color.paths.items()}
        for prefix in public:
            for header in {h for _, h in declared}:
                covering = [p for p, h in declared if h == header and prefix.startswith(p)]
                best = max(covering, key=len, default=None)
                if best is not None and best != prefix and (best, header) in paths:
                    paths[(prefix, header)] = paths[(best, header)]
        return paths

    def check_size(self, node: str, attributes: dict[str, str]) -> None:
        if len(attributes) + len(ANCHOR_ATTRIBUTES) > MAX_ATTRIBUTES:
            self.lose(
                f"virtual node {node}",
                "more than 30 attributes",
                f"Cloud Map allows {MAX_ATTRIBUTES} attributes per instance: registering"
                f" {len(attributes) + len(ANCHOR_ATTRIBUTES)} fails; merge routes first",
            )


def path_key(path: str, private: bool, header: tuple[str, str] | None) -> str:
    """The nightjar route attribute key of a path (``[private]/p``, ``[header:x=1]/p``)."""
    if header is not None:
        visibility = "private," if private else ""
        return f"[{visibility}header:{header[0]}={header[1]}]{path}"
    return f"[private]{path}" if private else path


def _route_order(route: dict[str, Any]) -> tuple[int, str]:
    priority = (route.get("spec") or {}).get("priority")
    return (1001 if priority is None else int(priority)), str(route.get("routeName"))


def plan_import(defs: AppMeshDefinitions) -> ImportPlan:
    """The ``service-settings`` of every importable virtual node, and every loss."""
    planner = _Planner(defs)
    planner.losses.extend(defs.read_losses)
    planner.read_nodes()
    planner.read_services()
    reached = planner.gateway_prefixes()
    settings = planner.settings(reached)
    return ImportPlan(defs.mesh, tuple(settings), tuple(planner.losses))
