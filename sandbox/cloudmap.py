"""Register a mesh in Cloud Map the way ECS and CloudFormation would, for make demo and tests."""

from __future__ import annotations

import hashlib
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
    """Create a private DNS namespace and return its id (each in a VPC of its own: moto
    allows one private DNS namespace per VPC, AWS one per domain name)."""
    vpc = f"vpc-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    client.create_private_dns_namespace(Name=name, Vpc=vpc)
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


def update_settings(client: Any, service_id: str, settings: dict[str, str]) -> None:
    """Replace service-settings attributes (moto appends on re-register; AWS replaces)."""
    client.deregister_instance(ServiceId=service_id, InstanceId="service-settings")
    attributes = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "1", **settings}
    client.register_instance(
        ServiceId=service_id, InstanceId="service-settings", Attributes=attributes
    )
