"""The test meshes; registration helpers live in sandbox.cloudmap (shared with make demo)."""

from __future__ import annotations

from typing import Any

from sandbox.cloudmap import (
    FISH,
    CloudMapService,
    Task,
    create_namespace,
    register,
    update_settings,
)
from sandbox.moto import list_services_filtered

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
