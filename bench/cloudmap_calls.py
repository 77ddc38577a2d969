"""Cloud Map requests one scan sends, counted through ``CloudMapDiscovery`` itself.

The client answers like AWS pages (ListNamespaces and ListServices: 100 per page, their
default and maximum; DiscoverInstances: one request per service, no paging), from the same
synthetic mesh as the cycle benchmark, and fires the ``request-created`` hook the discovery
counts with, once per request. What is measured is our code's request pattern, not latency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from configurator.discovery import CloudMapDiscovery, RawNamespace
from sandbox.synthetic import namespace_names, synthetic_mesh

PAGE = 100


class _Events:
    def __init__(self) -> None:
        self.hooks: list[Callable[..., None]] = []

    def register(self, _name: str, hook: Callable[..., None]) -> None:
        self.hooks.append(hook)


class _Meta:
    def __init__(self) -> None:
        self.events = _Events()


class PagingCloudMap:
    """Answers ListNamespaces, ListServices and DiscoverInstances for fixed namespaces."""

    def __init__(self, namespaces: list[RawNamespace]) -> None:
        self.meta = _Meta()
        self.namespaces = {ns.id: ns for ns in namespaces}

    def _request(self) -> None:
        for hook in self.meta.events.hooks:
            hook()

    def _page(self, items: list[Any], key: str, token: str | None) -> dict[str, Any]:
        start = int(token or 0)
        page: dict[str, Any] = {key: items[start : start + PAGE]}
        if start + PAGE < len(items):
            page["NextToken"] = str(start + PAGE)
        return page

    def list_namespaces(self, NextToken: str | None = None) -> dict[str, Any]:  # noqa: N803
        self._request()
        items = [{"Id": ns.id, "Name": ns.name} for ns in self.namespaces.values()]
        return self._page(items, "Namespaces", NextToken)

    def list_services(self, Filters: Any, NextToken: str | None = None) -> dict[str, Any]:  # noqa: N803
        self._request()
        ns = self.namespaces[Filters[0]["Values"][0]]
        items = [{"Id": s.id, "Name": s.name, "NamespaceId": ns.id} for s in ns.services]
        return self._page(items, "Services", NextToken)

    def discover_instances(self, NamespaceName: str, ServiceName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self._request()
        ns = next(n for n in self.namespaces.values() if n.name == NamespaceName)
        svc = next(s for s in ns.services if s.name == ServiceName)
        instances = [
            {"InstanceId": i.id, "Attributes": i.attributes, "HealthStatus": i.health}
            for i in svc.instances
        ]
        return {"Instances": instances}


def scan_requests(services: int, namespaces: int, endpoints: int = 5) -> int:
    """Cloud Map requests of one scan of the synthetic mesh."""
    names = namespace_names(namespaces)
    raw = synthetic_mesh(services, namespaces, endpoints).scan(names).namespaces
    discovery = CloudMapDiscovery(PagingCloudMap(raw))  # type: ignore[arg-type]
    scan = discovery.scan(names)
    assert sum(len(ns.services) for ns in scan.namespaces) == sum(len(n.services) for n in raw)
    return discovery.calls_made()
