"""The operator's side of Cloud Map for ``nightjar shift``: a service's colors, and rewriting
one color's ``service-settings`` instance.

Reading a service's colors costs one ListNamespaces page per 100 namespaces, one ListServices
page per 100 services and one GetInstance per Cloud Map service of the namespace (a service's
colors live in Cloud Map services of any name). A write is one RegisterInstance of
``service-settings`` with every attribute: Cloud Map replaces the instance's attributes, so
the ones nightjar does not touch are written back unchanged. Cloud Map has no conditional
write: two operators editing one instance at once, the last write wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nightjar_cli.errors import OperatorError
from shared.aws import describe_aws_error
from shared.models import SETTINGS_INSTANCE


@dataclass(frozen=True)
class ColorSettings:
    """One service-color as Cloud Map holds it: its Cloud Map service and its attributes."""

    cloud_map_service: str
    service_id: str
    attributes: dict[str, str]

    @property
    def color(self) -> str:
        return self.attributes.get("COLOR", "")


class CloudMapSettings:
    """Reads and writes ``service-settings`` instances through an injected boto3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def colors(self, namespace: str, service: str) -> dict[str, ColorSettings]:
        """Every color of SERVICE ``service`` in ``namespace``, by COLOR."""
        namespace_id = self._namespace_id(namespace)
        found: dict[str, ColorSettings] = {}
        filters = [{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
        for page in self._pages("ListServices", self.client.list_services, Filters=filters):
            for svc in page.get("Services", []):
                if svc.get("NamespaceId", namespace_id) != namespace_id:
                    continue  # some endpoints ignore Filters
                attributes = self._settings(str(svc["Id"]))
                if attributes is not None and attributes.get("SERVICE") == service:
                    settings = ColorSettings(str(svc["Name"]), str(svc["Id"]), attributes)
                    found.setdefault(settings.color, settings)
        return found

    def write(self, color: ColorSettings, attributes: dict[str, str]) -> None:
        """Replace the attributes of ``color``'s ``service-settings`` instance."""
        self._call(
            "RegisterInstance",
            self.client.register_instance,
            ServiceId=color.service_id,
            InstanceId=SETTINGS_INSTANCE,
            Attributes=attributes,
        )

    def _namespace_id(self, name: str) -> str:
        for page in self._pages("ListNamespaces", self.client.list_namespaces):
            for ns in page.get("Namespaces", []):
                if ns["Name"] == name:
                    return str(ns["Id"])
        raise OperatorError(f"Cloud Map has no namespace {name!r}; check --namespace")

    def _settings(self, service_id: str) -> dict[str, str] | None:
        try:
            got = self.client.get_instance(ServiceId=service_id, InstanceId=SETTINGS_INSTANCE)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InstanceNotFound":
                return None
            raise _refused("GetInstance", err) from err
        except BotoCoreError as err:
            raise _refused("GetInstance", err) from err
        return {str(k): str(v) for k, v in (got["Instance"].get("Attributes") or {}).items()}

    def _pages(self, operation: str, fn: Callable[..., Any], **kw: Any) -> Iterator[Any]:
        token: str | None = None
        while True:
            page = self._call(operation, fn, **kw, **({"NextToken": token} if token else {}))
            yield page
            token = page.get("NextToken")
            if not token:
                return

    def _call(self, operation: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(**kw)
        except (ClientError, BotoCoreError) as err:
            raise _refused(operation, err) from err


def _refused(operation: str, err: Exception) -> OperatorError:
    return OperatorError(f"Cloud Map {operation} failed: {describe_aws_error(err)}")
