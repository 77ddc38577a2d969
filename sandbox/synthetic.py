"""Synthetic meshes of any size, and the changes an ECS mesh sees most, for the benchmarks and
the incremental-publishing tests.

``synthetic_mesh(services, namespaces, endpoints, change)`` is what discovery would return for
``services`` service-colors spread over ``namespaces`` namespaces, each with ``endpoints`` tasks
and one path; service 0 of the first namespace is served by two colors (blue 90 / green 10,
both counted) so a weight can change. ``change`` names one of ``CHANGES``, applied to that
first namespace.
"""

from __future__ import annotations

from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery

CHANGES = ("weight", "path", "endpoint_added", "health_flip")


def namespace_name(n: int) -> str:
    """The name of the n-th synthetic namespace."""
    return f"bench{n}.local"


def _task(ns: int, svc: int, k: int, health: str = "HEALTHY") -> RawInstance:
    address = f"10.{ns}.{svc // 200}.{svc % 200 + 1}"
    attrs = {"AWS_INSTANCE_IPV4": address, "AWS_INSTANCE_PORT": str(8000 + k)}
    return RawInstance(f"t{k}", attrs, health)


def _service(ns: int, svc: int, endpoints: int, change: str | None) -> list[RawService]:
    first = ns == 0
    settings = {"SERVICE": f"svc{svc}", "COLOR": "blue", f"/svc{svc}": "1"}
    tasks = [_task(ns, svc, k) for k in range(endpoints)]
    services = []
    if first and svc == 0:
        settings[f"/svc{svc}"] = "80" if change == "weight" else "90"
        green = {"SERVICE": "svc0", "COLOR": "green", "/svc0": "20" if change == "weight" else "10"}
        green_tasks = tuple(_task(ns, 255 * 200, k) for k in range(endpoints))
        services.append(
            RawService("s0g", "svc0-green", (RawInstance("service-settings", green), *green_tasks))
        )
    if first and svc == 1 and change == "path":
        settings["/svc1/new"] = "1"
    if first and svc == 2 and change == "endpoint_added":
        tasks.append(_task(ns, svc, endpoints))
    if first and svc == 3 and change == "health_flip":
        tasks[0] = _task(ns, svc, 0, "UNHEALTHY")
    instances = (RawInstance("service-settings", settings), *tasks)
    services.append(RawService(f"s{svc}", f"svc{svc}-blue", instances))
    return services


def synthetic_mesh(
    services: int, namespaces: int = 1, endpoints: int = 5, change: str | None = None
) -> StaticDiscovery:
    """The discovery result for the mesh described in the module docstring."""
    if change is not None and change not in CHANGES:
        raise ValueError(f"unknown change {change!r}: one of {', '.join(CHANGES)}")
    per_namespace = max(1, services // namespaces)
    result = []
    for ns in range(namespaces):
        count = per_namespace - 1 if ns == 0 else per_namespace  # svc0-green is the other one
        raw = [s for n in range(count) for s in _service(ns, n, endpoints, change)]
        result.append(RawNamespace(f"ns-{ns}", namespace_name(ns), tuple(raw)))
    return StaticDiscovery(result)


def namespace_names(namespaces: int) -> list[str]:
    """Every namespace ``synthetic_mesh`` makes for that count."""
    return [namespace_name(n) for n in range(namespaces)]
