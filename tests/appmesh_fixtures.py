"""App Mesh definitions in the API reference's describe shapes, for the import tests.

The colorteller demo: ``colorteller.appmesh-demo.local`` routes ``/`` to white (2) and blue (1)
and ``/admin`` to white only; the ingress gateway admits ``/color`` without rewriting, so
``/admin`` is reachable from sidecars only. ``colorgateway`` is a client with no virtual
service.
"""

from __future__ import annotations

from typing import Any

MESH = "appmesh-demo"
NAMESPACE = "appmesh-demo.local"
HOST = "colorteller.appmesh-demo.local"


def node(name: str, **spec: Any) -> dict[str, Any]:
    """A DescribeVirtualNode ``virtualNode`` with an http listener and Cloud Map discovery."""
    body: dict[str, Any] = {
        "listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}],
        "serviceDiscovery": {
            "awsCloudMap": {"namespaceName": NAMESPACE, "serviceName": name, "attributes": []}
        },
    }
    body.update(spec)
    return {"meshName": MESH, "virtualNodeName": name, "spec": body}


def listener(**extra: Any) -> list[dict[str, Any]]:
    return [{"portMapping": {"port": 9080, "protocol": "http"}, **extra}]


def service(name: str, provider: dict[str, Any]) -> dict[str, Any]:
    return {"meshName": MESH, "virtualServiceName": name, "spec": {"provider": provider}}


def router(name: str) -> dict[str, Any]:
    return {
        "meshName": MESH,
        "virtualRouterName": name,
        "spec": {"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]},
    }


def route(
    router_name: str, name: str, http: dict[str, Any], kind: str = "httpRoute"
) -> dict[str, Any]:
    return {
        "meshName": MESH,
        "virtualRouterName": router_name,
        "routeName": name,
        "spec": {kind: http},
    }


def http(prefix: str, *targets: tuple[str, int], **extra: Any) -> dict[str, Any]:
    """An httpRoute matching ``prefix`` with ``weightedTargets``."""
    weighted = [{"virtualNode": n, "weight": w} for n, w in targets]
    return {"match": {"prefix": prefix}, "action": {"weightedTargets": weighted}, **extra}


def gateway(name: str = "ingress-gw") -> dict[str, Any]:
    return {
        "meshName": MESH,
        "virtualGatewayName": name,
        "spec": {"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]},
    }


def gateway_route(
    name: str, prefix: str, target: str, rewrite: dict[str, Any] | None = None, **match: Any
) -> dict[str, Any]:
    action: dict[str, Any] = {"target": {"virtualService": {"virtualServiceName": target}}}
    if rewrite is not None:
        action["rewrite"] = rewrite
    return {
        "meshName": MESH,
        "virtualGatewayName": "ingress-gw",
        "gatewayRouteName": name,
        "spec": {"httpRoute": {"match": {"prefix": prefix, **match}, "action": action}},
    }


NO_REWRITE = {"prefix": {"defaultPrefix": "DISABLED"}}
RETRY = {
    "maxRetries": 3,
    "perRetryTimeout": {"unit": "ms", "value": 500},
    "httpRetryEvents": ["server-error", "gateway-error"],
    "tcpRetryEvents": ["connection-error"],
}


def colorteller() -> dict[str, list[dict[str, Any]]]:
    """The demo mesh, by describe-* output key."""
    return {
        "virtualNode": [
            node(
                "colorteller-white",
                listeners=listener(
                    healthCheck={
                        "protocol": "http",
                        "path": "/ping",
                        "port": 9080,
                        "intervalMillis": 5000,
                        "timeoutMillis": 2000,
                        "healthyThreshold": 2,
                        "unhealthyThreshold": 3,
                    },
                    outlierDetection={
                        "maxServerErrors": 5,
                        "interval": {"unit": "s", "value": 10},
                        "baseEjectionDuration": {"unit": "s", "value": 30},
                        "maxEjectionPercent": 50,
                    },
                    connectionPool={"http": {"maxConnections": 100, "maxPendingRequests": 10}},
                ),
            ),
            node("colorteller-blue"),
            node(
                "colorgateway",
                backends=[{"virtualService": {"virtualServiceName": HOST}}],
            ),
        ],
        "virtualService": [
            service(HOST, {"virtualRouter": {"virtualRouterName": "colorteller-router"}})
        ],
        "virtualRouter": [router("colorteller-router")],
        "route": [
            route(
                "colorteller-router",
                "colorteller-route",
                http(
                    "/",
                    ("colorteller-white", 2),
                    ("colorteller-blue", 1),
                    retryPolicy=RETRY,
                    timeout={"perRequest": {"unit": "s", "value": 3}},
                ),
            ),
            route(
                "colorteller-router",
                "colorteller-admin",
                http(
                    "/admin",
                    ("colorteller-white", 1),
                    retryPolicy=RETRY,
                    timeout={"perRequest": {"unit": "s", "value": 3}},
                ),
            ),
        ],
        "virtualGateway": [gateway()],
        "gatewayRoute": [
            gateway_route("colorteller-gr", "/color", HOST, NO_REWRITE, hostname={"exact": HOST})
        ],
    }


def definitions(resources: dict[str, list[dict[str, Any]]] | None = None) -> Any:
    """``AppMeshDefinitions`` of ``resources`` (default: the demo)."""
    from nightjar_cli.appmesh_sources import group

    found = resources if resources is not None else colorteller()
    return group([(kind, r) for kind, items in found.items() for r in items], MESH)


# describe-* key -> (create call, the fields naming the resource), in creation order
CREATE = {
    "virtualNode": ("create_virtual_node", ("virtualNodeName",)),
    "virtualRouter": ("create_virtual_router", ("virtualRouterName",)),
    "route": ("create_route", ("virtualRouterName", "routeName")),
    "virtualGateway": ("create_virtual_gateway", ("virtualGatewayName",)),
    "gatewayRoute": ("create_gateway_route", ("virtualGatewayName", "gatewayRouteName")),
}


def create_in_moto(client: Any, resources: dict[str, list[dict[str, Any]]]) -> None:
    """Create every resource moto implements through the App Mesh API (not virtual services)."""
    client.create_mesh(meshName=MESH)
    for kind, (call, names) in CREATE.items():
        for resource in resources[kind]:
            named = {name: resource[name] for name in names}
            getattr(client, call)(meshName=MESH, spec=resource["spec"], **named)


class _Pages:
    def __init__(self, key: str, items: list[dict[str, Any]]) -> None:
        self.key, self.items = key, items

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{self.key: self.items}]


class WithVirtualServices:
    """An App Mesh client: moto for what moto implements, ``services`` (describe shapes) for the
    virtual services it does not (ListVirtualServices, DescribeVirtualService)."""

    def __init__(self, client: Any, services: list[dict[str, Any]]) -> None:
        self.client = client
        self.services = {s["virtualServiceName"]: s for s in services}

    def get_paginator(self, operation: str) -> Any:
        if operation == "list_virtual_services":
            names = [{"virtualServiceName": n, "meshName": MESH} for n in self.services]
            return _Pages("virtualServices", names)
        return self.client.get_paginator(operation)

    def describe_virtual_service(self, **kw: Any) -> dict[str, Any]:
        return {"virtualService": self.services[kw["virtualServiceName"]]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def serve_virtual_services(monkeypatch: Any, services: list[dict[str, Any]]) -> None:
    """Make ``nightjar import-appmesh --mesh`` read ``services`` as the mesh's virtual services
    (moto lacks them), everything else from the App Mesh endpoint it would use."""
    from nightjar_cli import appmesh_cli
    from shared.aws import make_client

    def clients(kind: str, config: Any) -> Any:
        made = make_client(kind, config)
        return WithVirtualServices(made, services) if kind == "appmesh" else made

    monkeypatch.setattr(appmesh_cli, "make_client", clients)


def register_replaces_attributes(monkeypatch: Any) -> None:
    """Make moto's RegisterInstance replace an instance with the same id, as AWS does (moto
    appends a second one and keeps the old attributes)."""
    from moto.servicediscovery.models import ServiceDiscoveryBackend

    original = ServiceDiscoveryBackend.register_instance

    def register(self: Any, service_id: str, instance_id: str, *args: Any, **kw: Any) -> str:
        service = self.get_service(service_id)
        service.instances = [i for i in service.instances if i.instance_id != instance_id]
        return str(original(self, service_id, instance_id, *args, **kw))

    monkeypatch.setattr(ServiceDiscoveryBackend, "register_instance", register)
