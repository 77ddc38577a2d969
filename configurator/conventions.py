"""The nightjar Cloud Map conventions: raw attributes -> validated mesh model + problems.

Every attribute value is untrusted. Anything that does not fit its documented form
(docs/cloud-map.md) is dropped and recorded as a ``Problem``; nothing unvalidated leaves this
module, so no raw Cloud Map string can reach a template.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from configurator.discovery import RawNamespace, RawService
from configurator.policies import DEFAULT_POLICIES, POLICY_KEYS, Policies, read_policies
from shared.models import NAME_RE, NAME_RULE, SETTINGS_INSTANCE, Problem

PATH_FORM = re.compile(r"^/(?:[A-Za-z0-9._~!$&()*+,;=:@/-]|%[0-9A-Fa-f]{2}){0,511}\Z")
WEIGHT_FORM = re.compile(r"^[0-9]{1,7}\Z")
MAX_WEIGHT = 1_000_000
CATCH_ALL = "*"
HTTP2_ON = {"yes", "true", "enabled", "active", "1", "http2"}
HTTP2_OFF = {"", "no", "false", "disabled", "inactive", "0", "http1", "http1.1"}
VISIBILITY_PREFIXES = (("[private]", True), ("[public]", False), ("?", True))
IGNORED_PREFIX = "AWS_"
# [header:<name>=<value>]/path, optionally [private,header:...] or [public,header:...]. The
# name is an RFC 7230 token; the value printable ASCII without spaces. The path part cannot
# contain ']', so the value runs to the last ']'.
HEADER_ROUTE_FORM = re.compile(
    r"^\[(?:(private|public),)?header:([!#$%&'*+.^_`|~0-9A-Za-z-]{1,100})=([\x21-\x7e]{1,256})\]"
    r"(/[^\]]*|\*)\Z"
)
HOSTS_KEY = "HOSTS"
# RFC 1123 host names: labels of letters, digits and '-' (not at either end), at most 63
# characters each and 253 in all; the only wildcard is a leading '*.'.
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_FORM = re.compile(rf"^(?:\*\.)?{HOST_LABEL}(?:\.{HOST_LABEL})*$")
MAX_HOST_LENGTH = 253
GATEWAY_KEY = "GATEWAY"
GATEWAY_ON = {"yes", "true", "enabled", "active", "1"}
GATEWAY_OFF = {"", "no", "false", "disabled", "inactive", "0"}
PEERS_KEY = "PEERS"
# <namespace>:<port>[:direct]; the namespace has the form of a node id part (NAME_RE).
PEER_FORM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,254}):([0-9]{1,5})(?::(direct))?\Z")
MIN_PEER_PORT = 1024
PEER_RULE = (
    "accepted form: <namespace>:<port>[:direct], comma-separated, port 1024-65535"
    " (e.g. ocean.service.local:9101,reef.service.local:9102:direct)"
)


@dataclass(frozen=True)
class Endpoint:
    """A healthy task: IPv4 address and port."""

    host: str
    port: int


@dataclass(frozen=True)
class RouteDecl:
    """One route a service-color declares: a path prefix (or ``*``), its visibility and weight."""

    path: str
    private: bool
    weight: int
    header: tuple[str, str] | None = None  # (lower-case name, exact value) of a header route


@dataclass(frozen=True)
class Peer:
    """Another mesh a service-color's sidecars reach on a port of their own (``PEERS``)."""

    namespace: str  # lower-case, as written; resolved against the served namespaces later
    port: int
    direct: bool = False  # False: through the peer's gateway; True: to its service clusters

    @property
    def label(self) -> str:
        """The item as an operator writes it: ``ocean.service.local:9101[:direct]``."""
        return f"{self.namespace}:{self.port}{':direct' if self.direct else ''}"


@dataclass(frozen=True)
class ServiceColor:
    """One validated service-color of a namespace."""

    service: str
    color: str
    http2: bool
    routes: tuple[RouteDecl, ...]
    endpoints: tuple[Endpoint, ...]
    policies: Policies = DEFAULT_POLICIES
    hosts: tuple[str, ...] = ()  # HOSTS: lower-case host names, sorted, no duplicates
    peers: tuple[Peer, ...] = ()  # PEERS: in the order written, no duplicate namespace or port


@dataclass(frozen=True)
class GatewayService:
    """The Cloud Map service holding a namespace's gateway tasks (``GATEWAY=yes``)."""

    name: str  # the Cloud Map service name
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class NamespaceModel:
    """Every valid service-color of one namespace, and its gateway service if it has one."""

    name: str
    service_colors: tuple[ServiceColor, ...]
    gateway: GatewayService | None = None


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[Problem] = []

    def add(self, item: str, reason: str) -> None:
        self.items.append(Problem(where=self.where, item=item, reason=reason))


def parse_route_key(key: str) -> tuple[str, bool] | None:
    """``(path, private)`` for a route attribute key, or None when the key is no route key."""
    private = False
    for prefix, is_private in VISIBILITY_PREFIXES:
        if key.startswith(prefix):
            key, private = key[len(prefix) :], is_private
            break
    else:
        if not (key.startswith("/") or key == CATCH_ALL):
            return None
    return (CATCH_ALL if key == "/" else key), private


def parse_header_route_key(key: str) -> tuple[str, bool, tuple[str, str]] | None:
    """``(path, private, (header name, value))`` for a header route key, or None."""
    match = HEADER_ROUTE_FORM.match(key)
    if match is None:
        return None
    visibility, name, value, path = match.groups()
    return (CATCH_ALL if path == "/" else path), visibility == "private", (name.lower(), value)


def parse_weight(value: str) -> int | None:
    """An integer weight 0..1000000, or None."""
    text = value.strip()
    if not WEIGHT_FORM.match(text) or int(text) > MAX_WEIGHT:
        return None
    return int(text)


def parse_endpoint(attributes: dict[str, str]) -> Endpoint | str:
    """The endpoint of an instance, or the reason it is not one."""
    host = attributes.get("AWS_INSTANCE_IPV4", "")
    port = attributes.get("AWS_INSTANCE_PORT", "")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return f"AWS_INSTANCE_IPV4 {host!r} is not a dotted IPv4 address"
    if address.is_unspecified or address.is_multicast:
        return f"AWS_INSTANCE_IPV4 {host!r} cannot be an endpoint"
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"AWS_INSTANCE_PORT {port!r} must be an integer from 1 to 65535"
    return Endpoint(str(address), int(port))


def parse_hosts(value: str) -> tuple[tuple[str, ...], list[str]]:
    """``(valid host names, rejected entries)`` of a comma-separated HOSTS value."""
    hosts, rejected = set(), []
    for entry in value.split(","):
        host = entry.strip().lower()
        if host and len(host) <= MAX_HOST_LENGTH and HOST_FORM.match(host):
            hosts.add(host)
        else:
            rejected.append(entry.strip())
    return tuple(sorted(hosts)), rejected


def _read_hosts(value: str, problems: _Problems) -> tuple[str, ...]:
    hosts, rejected = parse_hosts(value)
    if rejected:
        problems.add(
            f"attribute 'HOSTS' = {value!r}",
            f"{', '.join(repr(r) for r in rejected)} not a host name (RFC 1123 labels, optionally"
            " a leading '*.', no port); "
            + ("the other hosts are kept" if hosts else "the service keeps no host of its own"),
        )
    return hosts


def parse_peers(value: str) -> tuple[tuple[Peer, ...], list[tuple[str, str]]]:
    """``(valid peers, [(rejected item, why)])`` of a comma-separated PEERS value.

    A later item naming a namespace or a port an earlier one took is rejected too."""
    peers: list[Peer] = []
    rejected: list[tuple[str, str]] = []
    for entry in value.split(","):
        item = entry.strip()
        match = PEER_FORM.match(item)
        if match is None:
            rejected.append((item, "not <namespace>:<port>[:direct]"))
            continue
        namespace, port, direct = match.group(1).lower(), int(match.group(2)), bool(match[3])
        if not MIN_PEER_PORT <= port <= 65535:
            rejected.append((item, f"port {port} is not from {MIN_PEER_PORT} to 65535"))
        elif any(p.namespace == namespace for p in peers):
            rejected.append((item, f"{namespace} is already a peer"))
        elif any(p.port == port for p in peers):
            rejected.append((item, f"port {port} is already taken by another peer"))
        else:
            peers.append(Peer(namespace, port, direct))
    return tuple(peers), rejected


def _read_peers(value: str, problems: _Problems) -> tuple[Peer, ...]:
    peers, rejected = parse_peers(value)
    for item, why in rejected:
        problems.add(
            f"attribute 'PEERS' item {item!r}",
            f"{why}; {PEER_RULE}; this peer is dropped, the others are kept",
        )
    return peers


def parse_flag(value: str) -> bool | None:
    """A GATEWAY flag: True (yes/true/enabled/active/1), False (no/false/.../empty), or None."""
    flag = value.strip().lower()
    return True if flag in GATEWAY_ON else False if flag in GATEWAY_OFF else None


@dataclass(frozen=True)
class _Settings:
    service: str
    color: str
    http2: bool
    routes: tuple[RouteDecl, ...]
    policies: Policies
    hosts: tuple[str, ...]
    peers: tuple[Peer, ...]


def _read_settings(attributes: dict[str, str], problems: _Problems) -> _Settings | None:
    names = []
    for key in ("SERVICE", "COLOR"):
        value = attributes.get(key)
        if value is None or not NAME_RE.match(value):
            shown = "missing" if value is None else repr(value)
            problems.add(
                f"attribute {key!r}",
                f"{key} is {shown}; it must be {NAME_RULE} — the service-color is skipped",
            )
            return None
        names.append(value)
    http2 = False
    hosts: tuple[str, ...] = ()
    peers: tuple[Peer, ...] = ()
    routes = []
    for key, value in sorted(attributes.items()):
        if key in ("SERVICE", "COLOR", GATEWAY_KEY) or key in POLICY_KEYS:
            continue  # GATEWAY reaches here only when it says "no" (read_namespace)
        if key.startswith(IGNORED_PREFIX):
            continue
        if key == "HTTP2":
            http2 = _read_http2(value, problems)
        elif key == HOSTS_KEY:
            hosts = _read_hosts(value, problems)
        elif key == PEERS_KEY:
            peers = _read_peers(value, problems)
        elif (decl := _read_route_attribute(key, value, problems)) is not None:
            routes.append(decl)
    policies = read_policies(attributes, problems.add)
    return _Settings(names[0], names[1], http2, tuple(routes), policies, hosts, peers)


def _read_route_attribute(key: str, value: str, problems: _Problems) -> RouteDecl | None:
    if key.startswith("[") and "header:" in key:
        header_route = parse_header_route_key(key)
        if header_route is None:
            problems.add(
                f"attribute {key!r}",
                "header route keys are [header:<name>=<value>]/path or"
                " [private,header:<name>=<value>]/path (name: RFC 7230 token, value: printable"
                " ASCII without spaces); the route is dropped",
            )
            return None
        path, private, header = header_route
        decl = _read_route((path, private), key, value, problems)
        return None if decl is None else RouteDecl(path, private, decl.weight, header)
    route = parse_route_key(key)
    if route is None:
        problems.add(f"attribute {key!r}", "unknown attribute; it is ignored")
        return None
    return _read_route(route, key, value, problems)


def _read_http2(value: str, problems: _Problems) -> bool:
    flag = value.strip().lower()
    if flag not in HTTP2_ON | HTTP2_OFF:
        problems.add(
            f"attribute 'HTTP2' = {value!r}",
            "use yes/true/enabled/active/1/http2 or no/false; treated as HTTP/1.1",
        )
    return flag in HTTP2_ON


def _read_route(
    route: tuple[str, bool], key: str, value: str, problems: _Problems
) -> RouteDecl | None:
    path, private = route
    if path != CATCH_ALL and not PATH_FORM.match(path):
        problems.add(
            f"attribute {key!r}",
            "path must be '/' then URL path characters [A-Za-z0-9._~!$&()*+,;=:@/-] or %XX,"
            " at most 512 characters; the route is dropped",
        )
        return None
    weight = parse_weight(value)
    if weight is None:
        problems.add(
            f"attribute {key!r} = {value!r}",
            f"weight must be an integer from 0 to {MAX_WEIGHT}; the route is dropped",
        )
        return None
    return RouteDecl(path, private, weight)


def read_service(
    namespace: str, service: RawService, problems: list[Problem]
) -> ServiceColor | None:
    """The service-color a Cloud Map service declares, or None (not one, or invalid)."""
    settings = settings_of(service)
    if settings is None:
        return None
    found = _Problems(f"{namespace}/{service.name}")
    parsed = _read_settings(settings, found)
    endpoints = _read_endpoints(service, found)
    problems.extend(found.items)
    if parsed is None:
        return None
    p = parsed
    return ServiceColor(
        p.service, p.color, p.http2, p.routes, endpoints, p.policies, p.hosts, p.peers
    )


def settings_of(service: RawService) -> dict[str, str] | None:
    """The attributes of the service's ``service-settings`` instance, or None."""
    found = next((i for i in service.instances if i.id == SETTINGS_INSTANCE), None)
    return None if found is None else found.attributes


def _read_endpoints(service: RawService, found: _Problems) -> tuple[Endpoint, ...]:
    endpoints = []
    for instance in service.instances:
        if instance.id == SETTINGS_INSTANCE or instance.health == "UNHEALTHY":
            continue
        endpoint = parse_endpoint(instance.attributes)
        if isinstance(endpoint, str):
            found.add(f"instance {instance.id!r}", endpoint + "; the instance gets no traffic")
        else:
            endpoints.append(endpoint)
    return tuple(sorted(set(endpoints), key=_ep_key))


def is_gateway_service(service: RawService) -> bool:
    """Whether the service's settings carry a GATEWAY key that does not say "no"."""
    settings = settings_of(service) or {}
    return GATEWAY_KEY in settings and parse_flag(settings[GATEWAY_KEY]) is not False


def read_gateway(
    namespace: str, service: RawService, problems: list[Problem]
) -> GatewayService | None:
    """The gateway service a ``GATEWAY=yes`` service declares, or None (reported) when its
    settings are not a gateway's: a bad GATEWAY value, or SERVICE/COLOR beside it."""
    settings = settings_of(service) or {}
    found = _Problems(f"{namespace}/{service.name}")
    value = settings.get(GATEWAY_KEY, "")
    gateway = None
    if parse_flag(value) is None:
        found.add(
            f"attribute 'GATEWAY' = {value!r}",
            "use yes (this service holds the namespace's gateway tasks) or no; the service is"
            " skipped",
        )
    elif "SERVICE" in settings or "COLOR" in settings:
        found.add(
            "attribute 'GATEWAY'",
            "a gateway service has no SERVICE or COLOR (its tasks run the gateway node); remove"
            " them or GATEWAY — the service is skipped",
        )
    else:
        for key in sorted(settings):
            if key != GATEWAY_KEY and not key.startswith(IGNORED_PREFIX):
                found.add(f"attribute {key!r}", "a gateway service carries only GATEWAY; ignored")
        gateway = GatewayService(service.name, _read_endpoints(service, found))
    problems.extend(found.items)
    return gateway


def _ep_key(endpoint: Endpoint) -> tuple[int, int]:
    return int(ipaddress.IPv4Address(endpoint.host)), endpoint.port


def read_namespace(raw: RawNamespace) -> tuple[NamespaceModel, list[Problem]]:
    """Validate every service of a namespace; duplicates of a service-color are dropped."""
    problems: list[Problem] = []
    if not NAME_RE.match(raw.name):
        problems.append(
            Problem(where=raw.name, item="namespace", reason="name is not usable in node ids")
        )
        return NamespaceModel(raw.name, ()), problems
    seen: dict[tuple[str, str], str] = {}
    colors = []
    gateways: list[GatewayService] = []
    for service in sorted(raw.services, key=lambda s: s.name):
        if is_gateway_service(service):
            gateway = read_gateway(raw.name, service, problems)
            if gateway is not None:
                gateways.append(gateway)
            continue
        found = read_service(raw.name, service, problems)
        if found is None:
            continue
        key = (found.service, found.color)
        if key in seen:
            problems.append(
                Problem(
                    where=f"{raw.name}/{service.name}",
                    item=f"SERVICE={found.service} COLOR={found.color}",
                    reason=f"duplicate of Cloud Map service {seen[key]!r}, which is used instead",
                )
            )
            continue
        seen[key] = service.name
        colors.append(found)
    for extra in gateways[1:]:
        problems.append(
            Problem(
                where=f"{raw.name}/{extra.name}",
                item="attribute 'GATEWAY'",
                reason=f"the namespace already has the gateway service {gateways[0].name!r}"
                " (first by name), which is used instead",
            )
        )
    gateway = gateways[0] if gateways else None
    return NamespaceModel(raw.name, tuple(colors), gateway), problems
