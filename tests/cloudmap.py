"""The test meshes; registration helpers live in sandbox.cloudmap (shared with make demo)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.servicediscovery.responses import ServiceDiscoveryResponse

from sandbox.cloudmap import (
    FISH,
    CloudMapService,
    Task,
    create_namespace,
    register,
    update_settings,
)

__all__ = [
    "FISH",
    "CloudMapService",
    "Task",
    "create_namespace",
    "fish_mesh",
    "list_services_filtered",
    "register",
    "register_fish_mesh",
    "update_settings",
]


def fish_mesh() -> list[CloudMapService]:
    """The design brief's example mesh plus hostile and broken items."""
    return [
        CloudMapService(
            "tuna-blue",
            {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "90", "[private]/tuna/admin": "1"},
            [
                Task("10.0.1.2", "32768"),
                Task("10.0.1.1", "32769"),
                Task("10.0.1.3", "32770", False),
            ],
        ),
        CloudMapService(
            "tuna-green",
            {"SERVICE": "tuna", "COLOR": "green", "/tuna": "10", "/tuna/fin": "1"},
            [Task("10.0.2.1", "32768")],
        ),
        CloudMapService(
            "salmon-blue",
            {
                "SERVICE": "salmon",
                "COLOR": "blue",
                "HTTP2": "Yes",
                "?/salmon": "1",
                "[public]/salmon/menu": "5",
            },
            [Task("10.0.3.1", "9000")],
        ),
        CloudMapService(
            "ocean-main",
            {"SERVICE": "ocean", "COLOR": "main", "*": "1", "/v1/items:batch": "1"},
            [Task("10.0.4.1", "80")],
        ),
        CloudMapService("trout-blue", {"SERVICE": "trout", "COLOR": "blue", "/trout": "0"}, []),
        # Broken and hostile items: each is rejected and recorded as a problem.
        CloudMapService(
            "cod-blue",
            {"SERVICE": "cod", "COLOR": "blue", "/cod": "ten"},
            [Task("10.0.5.1", "8080")],
        ),
        CloudMapService("eel", {"SERVICE": "eel", "/eel": "1"}, [Task("10.0.6.1", "80")]),
        CloudMapService("tuna-blue-copy", {"SERVICE": "tuna", "COLOR": "blue", "/copy": "1"}),
        CloudMapService("hostile-name", {"SERVICE": 'x"y: {z}', "COLOR": "a{{b}}", "/h": "1"}),
        CloudMapService(
            "hostile-paths",
            {
                "SERVICE": "pike",
                "COLOR": "blue",
                '/a"b: {c}': "1",
                "/{{x}}": "1",
                "/ok": "1",
                "/ok2": "-1",
            },
            [Task("999.1.1.1", "80"), Task("10.0.7.1", "70000"), Task("10.0.7.2", "8o")],
        ),
        CloudMapService("not-in-mesh", None, [Task("10.0.9.9", "80")]),
    ]


def register_fish_mesh(cloudmap: Any, services: int | None = None) -> tuple[str, dict[str, str]]:
    """Create the fish namespace and register its first ``services`` services (default: all);
    returns the namespace id and each Cloud Map service's id by name."""
    ns_id = create_namespace(cloudmap)
    return ns_id, {svc.name: register(cloudmap, ns_id, svc) for svc in fish_mesh()[:services]}


@contextmanager
def list_services_filtered() -> Iterator[None]:
    """moto's ListServices ignores ``Filters``; AWS honours ``NAMESPACE_ID``. For the block,
    moto filters like AWS, in this process (in-process moto and ThreadedMotoServer alike)."""
    original = ServiceDiscoveryResponse.list_services

    def list_services(self: Any) -> str:
        filters = json.loads(self.body or "{}").get("Filters") or []
        wanted = [set(f.get("Values", [])) for f in filters if f.get("Name") == "NAMESPACE_ID"]
        found = [
            s.to_json()
            for s in self.servicediscovery_backend.list_services()
            if all(s.namespace_id in values for values in wanted)
        ]
        return json.dumps({"Services": found})

    ServiceDiscoveryResponse.list_services = list_services  # type: ignore[method-assign]
    try:
        yield
    finally:
        ServiceDiscoveryResponse.list_services = original  # type: ignore[method-assign]
