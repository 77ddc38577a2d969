"""A mesh described in YAML, in the shape discovery produces, for offline rendering.

    namespaces:
    - name: fish.service.local
      services:
      - name: tuna-blue                 # the Cloud Map service name
        instances:
        - id: service-settings
          attributes: {SERVICE: tuna, COLOR: blue, /tuna: "90"}
        - id: task-1
          attributes: {AWS_INSTANCE_IPV4: 10.0.1.12, AWS_INSTANCE_PORT: "32768"}
          health: HEALTHY               # HEALTHY (default), UNHEALTHY or UNKNOWN

Attribute values are strings, as in Cloud Map; they go through the same validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from configurator.discovery import RawInstance, RawNamespace, RawService
from configurator.errors import ConfiguratorError
from configurator.validate import parse_document


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstanceSpec(_Strict):
    id: str
    attributes: dict[str, str] = Field(default_factory=dict)
    health: Literal["HEALTHY", "UNHEALTHY", "UNKNOWN"] = "HEALTHY"


class ServiceSpec(_Strict):
    name: str
    instances: list[InstanceSpec] = Field(default_factory=list)


class NamespaceSpec(_Strict):
    name: str
    services: list[ServiceSpec] = Field(default_factory=list)


class MeshSpec(_Strict):
    namespaces: list[NamespaceSpec]


def load_mesh_file(path: Path) -> list[RawNamespace]:
    """The namespaces of a mesh file; ConfiguratorError naming the first bad item."""
    try:
        doc = parse_document(path.name, path.read_bytes())
    except (OSError, ValueError, yaml.YAMLError) as err:  # UnicodeDecodeError is a ValueError
        raise ConfiguratorError(f"cannot read mesh file {path}: {err}") from err
    try:
        spec = MeshSpec.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfiguratorError(f"mesh file {path}: {where}: {first['msg']}") from err
    return [
        RawNamespace(
            f"file:{ns.name}",
            ns.name,
            tuple(
                RawService(
                    f"file:{svc.name}",
                    svc.name,
                    tuple(RawInstance(i.id, dict(i.attributes), i.health) for i in svc.instances),
                )
                for svc in ns.services
            ),
        )
        for ns in spec.namespaces
    ]
