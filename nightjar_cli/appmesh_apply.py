"""An import plan's way out: ``service-settings`` registered in Cloud Map, or CloudFormation.

Registering needs ``servicediscovery:RegisterInstance`` and the reads ``ListNamespaces``,
``ListServices`` and ``GetInstance``. Cloud Map's RegisterInstance with an existing instance id
replaces that instance's attributes, which is how an update is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nightjar_cli.appmesh import ANCHOR_ATTRIBUTES, ImportPlan, ServiceSettings
from nightjar_cli.errors import OperatorError
from shared.models import SETTINGS_INSTANCE


@dataclass(frozen=True)
class Change:
    """What ``--apply`` did (or would do) for one Cloud Map service."""

    namespace: str
    cloud_map_service: str
    action: str  # created | updated | unchanged | refused | missing
    detail: str


def nightjar_keys(attributes: dict[str, str]) -> dict[str, str]:
    """The attributes nightjar reads (every key but AWS_*)."""
    return {k: v for k, v in attributes.items() if not k.startswith("AWS_")}


class CloudMapWriter:
    """Finds each planned service in Cloud Map and registers its ``service-settings``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.namespaces: dict[str, str] | None = None

    def namespace_id(self, name: str) -> str | None:
        if self.namespaces is None:
            pages = self.client.get_paginator("list_namespaces").paginate()
            self.namespaces = {ns["Name"]: ns["Id"] for p in pages for ns in p["Namespaces"]}
        return self.namespaces.get(name)

    def service_id(self, namespace_id: str, name: str) -> str | None:
        filters = [{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
        for page in self.client.get_paginator("list_services").paginate(Filters=filters):
            for service in page["Services"]:
                # some endpoints ignore Filters: check the namespace when they say it
                if service["Name"] == name and service.get("NamespaceId", namespace_id) == (
                    namespace_id
                ):
                    return str(service["Id"])
        return None

    def current(self, service_id: str) -> dict[str, str] | None:
        try:
            found = self.client.get_instance(ServiceId=service_id, InstanceId=SETTINGS_INSTANCE)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InstanceNotFound":
                return None
            raise
        return dict(found["Instance"].get("Attributes") or {})

    def register(self, service_id: str, attributes: dict[str, str]) -> None:
        self.client.register_instance(
            ServiceId=service_id,
            InstanceId=SETTINGS_INSTANCE,
            Attributes={**ANCHOR_ATTRIBUTES, **attributes},
        )


def apply_plan(writer: CloudMapWriter, plan: ImportPlan, write: bool, force: bool) -> list[Change]:
    """Register every planned ``service-settings`` (``write``), or say what would change."""
    try:
        return [_apply_one(writer, item, write, force) for item in plan.settings]
    except (ClientError, BotoCoreError) as err:
        raise OperatorError(f"Cloud Map refused: {err}; nothing after that was written") from err


def _apply_one(writer: CloudMapWriter, item: ServiceSettings, write: bool, force: bool) -> Change:
    def change(action: str, detail: str) -> Change:
        return Change(item.namespace, item.cloud_map_service, action, detail)

    namespace_id = writer.namespace_id(item.namespace)
    service_id = namespace_id and writer.service_id(namespace_id, item.cloud_map_service)
    if not service_id:
        return change(
            "missing",
            "no such Cloud Map service: create it first (the ECS service registers its tasks"
            " there); nothing written",
        )
    existing = writer.current(service_id)
    differs = sorted(
        k
        for k in nightjar_keys(existing or {}).keys() | item.attributes.keys()
        if (existing or {}).get(k) != item.attributes.get(k)
    )
    if existing is not None and not differs:
        return change("unchanged", "already registered with these attributes")
    if existing is not None and not force:
        return change("refused", f"differs in {', '.join(differs)}; --force replaces it")
    if write:
        writer.register(service_id, item.attributes)
    action = "created" if existing is None else "updated"
    done = {"created": "registered", "updated": "replaced"}[action] if write else "would write"
    return change(action, f"{done} {len(item.attributes)} attributes")


def logical_id(item: ServiceSettings) -> str:
    """A CloudFormation logical id for one service-settings resource."""
    return (
        "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", item.cloud_map_service))
        + "Settings"
    )


def cloudformation(plan: ImportPlan) -> dict[str, Any]:
    """A template of ``AWS::ServiceDiscovery::Instance`` resources, one per service-settings.

    ``ServiceId`` is a parameter per Cloud Map service: its id (``!GetAtt X.Id`` in the
    template that creates the service, or the id ``aws servicediscovery list-services`` shows).
    """
    parameters, resources = {}, {}
    for item in plan.settings:
        name = logical_id(item)
        parameter = name.removesuffix("Settings") + "ServiceId"
        parameters[parameter] = {
            "Type": "String",
            "Description": f"Cloud Map service id of {item.cloud_map_service} in {item.namespace}",
        }
        resources[name] = {
            "Type": "AWS::ServiceDiscovery::Instance",
            "Properties": {
                "ServiceId": {"Ref": parameter},
                "InstanceId": SETTINGS_INSTANCE,
                "InstanceAttributes": {**ANCHOR_ATTRIBUTES, **item.attributes},
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"nightjar service-settings imported from App Mesh mesh {plan.mesh}",
        "Parameters": parameters,
        "Resources": resources,
    }
