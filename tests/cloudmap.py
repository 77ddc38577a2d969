"""Build Cloud Map meshes the way ECS and CloudFormation would, for functional tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FISH = "fish.service.local"


@dataclass
class Task:
    """One registered ECS task: address, port, and whether Cloud Map reports it healthy."""

    ip: str
    port: str
    healthy: bool = True


@dataclass
class CloudMapService:
    """A Cloud Map service: its service-settings attributes and its tasks."""

    name: str
    settings: dict[str, str] | None
    tasks: list[Task] = field(default_factory=list)


def create_namespace(client: Any, name: str = FISH) -> str:
    """Create a private DNS namespace and return its id."""
    client.create_private_dns_namespace(Name=name, Vpc="vpc-12345678")
    for ns in client.list_namespaces()["Namespaces"]:
        if ns["Name"] == name:
            return str(ns["Id"])
    raise AssertionError(f"namespace {name} was not created")


def register(client: Any, namespace_id: str, service: CloudMapService) -> str:
    """Create the service, its service-settings instance, and one instance per task."""
    created = client.create_service(
        Name=service.name,
        NamespaceId=namespace_id,
        DnsConfig={"DnsRecords": [{"Type": "SRV", "TTL": 10}]},
        HealthCheckCustomConfig={"FailureThreshold": 1},
    )
    service_id = created["Service"]["Id"]
    if service.settings is not None:
        attributes = {
            "AWS_INSTANCE_IPV4": "127.0.0.1",
            "AWS_INSTANCE_PORT": "1",
            **service.settings,
        }
        client.register_instance(
            ServiceId=service_id, InstanceId="service-settings", Attributes=attributes
        )
    for n, task in enumerate(service.tasks):
        instance_id = f"task-{n}"
        client.register_instance(
            ServiceId=service_id,
            InstanceId=instance_id,
            Attributes={"AWS_INSTANCE_IPV4": task.ip, "AWS_INSTANCE_PORT": task.port},
        )
        if not task.healthy:
            client.update_instance_custom_health_status(
                ServiceId=service_id, InstanceId=instance_id, Status="UNHEALTHY"
            )
    return str(service_id)


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


def update_settings(client: Any, service_id: str, settings: dict[str, str]) -> None:
    """Replace service-settings attributes (moto appends on re-register; AWS replaces)."""
    client.deregister_instance(ServiceId=service_id, InstanceId="service-settings")
    attributes = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "1", **settings}
    client.register_instance(
        ServiceId=service_id, InstanceId="service-settings", Attributes=attributes
    )
