"""Discovery: read namespaces, services and instances from Cloud Map, untouched.

One cycle costs ``1 + S/100`` ListServices pages plus one DiscoverInstances call per service
(with ``HealthStatus=ALL``, so the ``service-settings`` instance, every endpoint and each one's
health arrive in a single call), plus one call to resolve each namespace. ListInstances would
need a second call per service (GetInstancesHealthStatus) for the same information.

Nothing here interprets attributes; ``conventions`` does. If any call fails after botocore's
retries, the whole scan fails with ``DiscoveryError``: a mesh that silently lost a service is
never returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from configurator.errors import DiscoveryError
from shared.aws import CONFIGURATOR, Patience, RequestCount, describe_aws_error, make_client
from shared.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_servicediscovery import ServiceDiscoveryClient

log = get_logger(__name__)

MAX_INSTANCES = 1000  # DiscoverInstances returns at most this many and does not paginate


@dataclass(frozen=True)
class RawInstance:
    """One Cloud Map instance as returned: id, attributes, health (HEALTHY/UNHEALTHY/UNKNOWN)."""

    id: str
    attributes: dict[str, str]
    health: str = "HEALTHY"


@dataclass(frozen=True)
class RawService:
    """One Cloud Map service and all its instances."""

    id: str
    name: str
    instances: tuple[RawInstance, ...]


@dataclass(frozen=True)
class RawNamespace:
    """One scanned namespace."""

    id: str
    name: str
    services: tuple[RawService, ...]


@dataclass
class Scan:
    """The result of one scan: every namespace, and how many Cloud Map calls it took."""

    namespaces: list[RawNamespace] = field(default_factory=list)
    calls: int = 0


class DiscoverySource(Protocol):
    """Where the mesh is discovered from."""

    def scan(self, namespaces: list[str]) -> Scan: ...

    def calls_made(self) -> int:
        """API requests sent so far (counted even when a scan fails)."""


class StaticDiscovery:
    """A fixed set of namespaces (tests, offline rendering)."""

    def __init__(self, namespaces: list[RawNamespace]) -> None:
        self._namespaces = namespaces

    def scan(self, namespaces: list[str]) -> Scan:
        wanted = set(namespaces)
        return Scan([n for n in self._namespaces if n.name in wanted or f"id:{n.id}" in wanted])

    def calls_made(self) -> int:
        return 0


def make_cloudmap_client(patience: Patience = CONFIGURATOR) -> ServiceDiscoveryClient:
    """A Cloud Map client from the standard AWS environment.

    botocore retries (standard mode, ``patience.attempts`` in all) and times out each request;
    nightjar does not retry on top. With ``AWS_ENDPOINT_URL`` set, DiscoverInstances must not
    get its ``data-`` host prefix, or it would miss the custom endpoint.
    """
    config = patience.config()
    if os.environ.get("AWS_ENDPOINT_URL"):
        config = config.merge(Config(inject_host_prefix=False))
    client: ServiceDiscoveryClient = make_client("servicediscovery", config)
    return client


class CloudMapDiscovery:
    """Scans Cloud Map namespaces through an injected boto3 client.

    Every HTTP request the client sends (each botocore retry included) is counted once, through
    botocore's ``request-created`` event: ``calls_made`` is the running total.
    """

    def __init__(self, client: ServiceDiscoveryClient) -> None:
        self.client = client
        self._requests = RequestCount(client, "servicediscovery")

    def calls_made(self) -> int:
        """Cloud Map HTTP requests sent so far (a failed scan's included)."""
        return self._requests.total

    def scan(self, namespaces: list[str]) -> Scan:
        """Read every named namespace completely, or raise DiscoveryError."""
        before = self.calls_made()
        result = [self._scan_namespace(ref) for ref in namespaces]
        return Scan(result, self.calls_made() - before)

    def _call(self, namespace: str, operation: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(**kw)
        except (ClientError, BotoCoreError) as err:
            code = (
                str(err.response.get("Error", {}).get("Code", ""))
                if isinstance(err, ClientError)
                else type(err).__name__
            )
            raise DiscoveryError(
                f"Cloud Map {operation} for namespace {namespace!r} failed: "
                f"{describe_aws_error(err)}",
                namespace=namespace,
                operation=operation,
                code=code,
            ) from err

    def _resolve(self, ref: str) -> tuple[str, str]:
        """(id, name) of a namespace named by name, ``id:<id>`` or ARN."""
        if ref.startswith("id:") or ref.startswith("arn:"):
            ns_id = ref[3:] if ref.startswith("id:") else ref.rsplit("/", 1)[-1]
            got = self._call(ref, "GetNamespace", self.client.get_namespace, Id=ns_id)
            return ns_id, str(got["Namespace"]["Name"])
        for page in self._pages(ref, "ListNamespaces", self.client.list_namespaces):
            for ns in page.get("Namespaces", []):
                if ns["Name"] == ref:
                    return str(ns["Id"]), ref
        raise DiscoveryError(
            f"Cloud Map namespace {ref!r} not found; check NJ_NAMESPACES (name, id:<id> or ARN)",
            namespace=ref,
            operation="ListNamespaces",
            code="NamespaceNotFound",
        )

    def _pages(
        self, namespace: str, operation: str, fn: Callable[..., Any], **kw: Any
    ) -> Iterator[Any]:
        token: str | None = None
        while True:
            page = self._call(
                namespace, operation, fn, **kw, **({"NextToken": token} if token else {})
            )
            yield page
            token = page.get("NextToken")
            if not token:
                return

    def _scan_namespace(self, ref: str) -> RawNamespace:
        ns_id, name = self._resolve(ref)
        services = []
        filters = [{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]
        for page in self._pages(name, "ListServices", self.client.list_services, Filters=filters):
            for svc in page.get("Services", []):
                if svc.get("NamespaceId", ns_id) == ns_id:  # some endpoints ignore Filters
                    services.append(self._scan_service(name, svc["Id"], svc["Name"]))
        services.sort(key=lambda s: s.name)
        return RawNamespace(ns_id, name, tuple(services))

    def _scan_service(self, namespace: str, service_id: str, service_name: str) -> RawService:
        got = self._call(
            namespace,
            "DiscoverInstances",
            self.client.discover_instances,
            NamespaceName=namespace,
            ServiceName=service_name,
            HealthStatus="ALL",
            MaxResults=MAX_INSTANCES,
        )
        instances = tuple(
            RawInstance(
                str(i["InstanceId"]),
                {str(k): str(v) for k, v in i.get("Attributes", {}).items()},
                str(i.get("HealthStatus", "UNKNOWN")),
            )
            for i in got.get("Instances", [])
        )
        if len(instances) >= MAX_INSTANCES:
            log.warning("cloudmap.instance_limit", namespace=namespace, service=service_name)
        return RawService(service_id, service_name, instances)
