"""The nightjar Cloud Map conventions: raw attributes -> validated mesh model + problems.

Every attribute value is untrusted. Anything that does not fit its documented form
(docs/cloud-map.md) is dropped and recorded as a ``Problem``; nothing unvalidated leaves this
module, so no raw Cloud Map string can reach a template.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from configurator.discovery import SETTINGS_INSTANCE, RawNamespace, RawService
from configurator.policies import DEFAULT_POLICIES, POLICY_KEYS, Policies, read_policies
from shared.models import NAME_RE, NAME_RULE, Problem

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
class ServiceColor:
    """One validated service-color of a namespace."""

    service: str
    color: str
    http2: bool
    routes: tuple[RouteDecl, ...]
    endpoints: tuple[Endpoint, ...]
    policies: Policies = DEFAULT_POLICIES
    hosts: tuple[str, ...] = ()  # HOSTS: lower-case host names, sorted, no duplicates


@dataclass(frozen=True)
class NamespaceModel:
    """Every valid service-color of one namespace."""

    name: str
    service_colors: tuple[ServiceColor, ...]


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


_Settings = tuple[str, str, bool, tuple[RouteDecl, ...], Policies, tuple[str, ...]]


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
    routes = []
    for key, value in sorted(attributes.items()):
        if key in ("SERVICE", "COLOR") or key in POLICY_KEYS or key.startswith(IGNORED_PREFIX):
            continue
        if key == "HTTP2":
            http2 = _read_http2(value, problems)
            continue
        if key == HOSTS_KEY:
            hosts = _read_hosts(value, problems)
            continue
        decl = _read_route_attribute(key, value, problems)
        if decl is not None:
            routes.append(decl)
    policies = read_policies(attributes, problems.add)
    return names[0], names[1], http2, tuple(routes), policies, hosts


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
    settings = next((i for i in service.instances if i.id == SETTINGS_INSTANCE), None)
    if settings is None:
        return None
    found = _Problems(f"{namespace}/{service.name}")
    parsed = _read_settings(settings.attributes, found)
    endpoints = []
    for instance in service.instances:
        if instance.id == SETTINGS_INSTANCE or instance.health == "UNHEALTHY":
            continue
        endpoint = parse_endpoint(instance.attributes)
        if isinstance(endpoint, str):
            found.add(f"instance {instance.id!r}", endpoint + "; the instance gets no traffic")
        else:
            endpoints.append(endpoint)
    problems.extend(found.items)
    if parsed is None:
        return None
    name, color, http2, routes, policies, hosts = parsed
    eps = tuple(sorted(set(endpoints), key=_ep_key))
    return ServiceColor(name, color, http2, routes, eps, policies, hosts)


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
    for service in sorted(raw.services, key=lambda s: s.name):
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
    return NamespaceModel(raw.name, tuple(colors)), problems
