"""Where ``nightjar import-appmesh`` reads App Mesh definitions from.

- the live App Mesh API (``--mesh NAME``): list + describe every resource of the mesh;
- a directory of ``aws appmesh describe-*`` JSON outputs (``--from DIR``);
- a CloudFormation template, YAML or JSON (``--from FILE``): ``AWS::AppMesh::*`` resources, with
  ``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::Join`` resolved where they name parameters (their
  defaults) or resources of the same template; a resource with anything else is reported.

Every reader returns the same ``AppMeshDefinitions`` (API describe shapes, camelCase).
PyYAML is imported only to read a YAML template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nightjar_cli.appmesh import AppMeshDefinitions, Loss
from nightjar_cli.errors import OperatorError

# describe-* output key -> (AppMeshDefinitions field, name field)
KINDS = {
    "virtualNode": ("virtual_nodes", "virtualNodeName"),
    "virtualService": ("virtual_services", "virtualServiceName"),
    "virtualRouter": ("virtual_routers", "virtualRouterName"),
    "route": ("routes", "routeName"),
    "virtualGateway": ("virtual_gateways", "virtualGatewayName"),
    "gatewayRoute": ("gateway_routes", "gatewayRouteName"),
}
CFN_KINDS = {f"AWS::AppMesh::{k[0].upper()}{k[1:]}": k for k in KINDS}
INSTALL_HINT = "reading YAML needs PyYAML: pip install 'nightjar-mesh[configurator]'"


def group(resources: list[tuple[str, dict[str, Any]]], mesh: str | None) -> AppMeshDefinitions:
    """Resources (``(describe key, object)``) of one mesh as ``AppMeshDefinitions``."""
    meshes = sorted({str(r.get("meshName")) for _, r in resources})
    if mesh is None:
        if len(meshes) != 1:
            found = ", ".join(meshes) or "none"
            raise OperatorError(f"the input holds meshes: {found}; choose one with --mesh NAME")
        mesh = meshes[0]
    fields: dict[str, list[dict[str, Any]]] = {f: [] for f, _ in KINDS.values()}
    for kind, resource in resources:
        if resource.get("meshName") == mesh:
            fields[KINDS[kind][0]].append(resource)
    return AppMeshDefinitions(
        mesh,
        virtual_nodes=tuple(fields["virtual_nodes"]),
        virtual_services=tuple(fields["virtual_services"]),
        virtual_routers=tuple(fields["virtual_routers"]),
        routes=tuple(fields["routes"]),
        virtual_gateways=tuple(fields["virtual_gateways"]),
        gateway_routes=tuple(fields["gateway_routes"]),
    )


# -- live API ---------------------------------------------------------------------------
def _pages(client: Any, operation: str, key: str, **kw: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**kw):
        yield from page[key]


def read_live(client: Any, mesh: str) -> AppMeshDefinitions:
    """Every resource of ``mesh`` from the App Mesh API (List* + Describe* calls only)."""
    try:
        return group(list(_live(client, mesh)), mesh)
    except (ClientError, BotoCoreError) as err:
        raise OperatorError(f"cannot read App Mesh mesh {mesh!r}: {err}") from err


def _live(client: Any, mesh: str) -> Iterator[tuple[str, dict[str, Any]]]:
    m = {"meshName": mesh}
    for vs in _pages(client, "list_virtual_services", "virtualServices", **m):
        name = vs["virtualServiceName"]
        yield (
            "virtualService",
            client.describe_virtual_service(**m, virtualServiceName=name)["virtualService"],
        )
    for vn in _pages(client, "list_virtual_nodes", "virtualNodes", **m):
        name = vn["virtualNodeName"]
        yield "virtualNode", client.describe_virtual_node(**m, virtualNodeName=name)["virtualNode"]
    for vr in _pages(client, "list_virtual_routers", "virtualRouters", **m):
        router = vr["virtualRouterName"]
        yield (
            "virtualRouter",
            client.describe_virtual_router(**m, virtualRouterName=router)["virtualRouter"],
        )
        for r in _pages(client, "list_routes", "routes", **m, virtualRouterName=router):
            yield (
                "route",
                client.describe_route(**m, virtualRouterName=router, routeName=r["routeName"])[
                    "route"
                ],
            )
    for vg in _pages(client, "list_virtual_gateways", "virtualGateways", **m):
        gw = vg["virtualGatewayName"]
        yield (
            "virtualGateway",
            client.describe_virtual_gateway(**m, virtualGatewayName=gw)["virtualGateway"],
        )
        for r in _pages(client, "list_gateway_routes", "gatewayRoutes", **m, virtualGatewayName=gw):
            yield (
                "gatewayRoute",
                client.describe_gateway_route(
                    **m, virtualGatewayName=gw, gatewayRouteName=r["gatewayRouteName"]
                )["gatewayRoute"],
            )


# -- a directory of describe-* outputs ----------------------------------------------------
def read_describe_dir(directory: Path, mesh: str | None) -> AppMeshDefinitions:
    """Every ``*.json`` file holding one describe-* output (``{"virtualNode": {...}}``)."""
    resources: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.json")):
        document = _load_json(path)
        kinds = [k for k in KINDS if isinstance(document, dict) and k in document]
        if not kinds and not (isinstance(document, dict) and "mesh" in document):
            raise OperatorError(f"{path} is not an 'aws appmesh describe-*' output")
        resources.extend((k, document[k]) for k in kinds)
    if not resources:
        raise OperatorError(f"no describe-* outputs (*.json) in {directory}")
    return group(resources, mesh)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise OperatorError(f"cannot read {path}: {err}") from err


# -- CloudFormation -------------------------------------------------------------------------
def camel(key: str) -> str:
    """A CloudFormation property name as the API spells it: ``AWSCloudMap`` -> ``awsCloudMap``,
    ``HTTP2`` -> ``http2``, ``HttpRoute`` -> ``httpRoute``."""
    run = re.match(r"[A-Z]+", key)
    if run is None:
        return key
    end = run.end()
    if 1 < end < len(key) and key[end].islower():
        end -= 1
    return key[:end].lower() + key[end:]


def api_shape(value: Any) -> Any:
    """A CloudFormation property tree with every key in the API's camelCase."""
    if isinstance(value, dict):
        return {camel(k): api_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [api_shape(v) for v in value]
    return value


def load_template(path: Path) -> dict[str, Any]:
    """A template as a dict; YAML short forms (``!Ref x``) become their long forms."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        document = _load_json(path)
    else:
        document = _load_yaml(text, path)
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise OperatorError(f"{path} is not a CloudFormation template (no Resources)")
    return document


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as err:
        raise OperatorError(INSTALL_HINT) from err

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise OperatorError(f"cannot read {path}: {err}") from err


class _Unresolved(Exception):  # internal: a value the template cannot tell
    pass


class _Resolver:
    """Intrinsic functions that name parameters or resources of the same template."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.parameters = template.get("Parameters") or {}
        self.resources = template["Resources"]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            function = self.functions().get(name)
            if function is not None:
                return function(arg)
            if name.startswith("Fn::"):
                raise _Unresolved(f"{name} is not resolved from a template")
        return {k: self.resolve(v) for k, v in value.items()}

    def functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Fn::GetAtt": self.get_att,
            "Fn::Sub": self.sub,
            "Fn::Join": self.join,
        }

    def ref(self, name: Any) -> Any:
        parameter = self.parameters.get(name)
        if parameter is not None and "Default" in parameter:
            return self.resolve(parameter["Default"])
        what = "a parameter without Default" if parameter is not None else "not a parameter"
        raise _Unresolved(f"!Ref {name} ({what}; Ref of a resource is its ARN or id)")

    def get_att(self, arg: Any) -> Any:
        name, attribute = (arg.split(".", 1) if isinstance(arg, str) else arg)[:2]
        properties = (self.resources.get(name) or {}).get("Properties") or {}
        if attribute not in properties:
            raise _Unresolved(f"!GetAtt {name}.{attribute} (not a property of the template)")
        return self.resolve(properties[attribute])

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(self.get_att(name))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, str(text))

    def join(self, arg: Any) -> str:
        separator, parts = arg
        return str(separator).join(str(p) for p in self.resolve(parts))


def read_cloudformation(path: Path, mesh: str | None) -> AppMeshDefinitions:
    """The ``AWS::AppMesh::*`` resources of a template, intrinsics resolved where possible."""
    template = load_template(path)
    resolver = _Resolver(template)
    resources, losses = [], []
    for logical_id, resource in sorted(template["Resources"].items()):
        kind = CFN_KINDS.get(str((resource or {}).get("Type")))
        if kind is None:
            continue
        try:
            properties = resolver.resolve(resource.get("Properties") or {})
        except _Unresolved as err:
            losses.append(
                Loss(
                    f"{resource['Type']} {logical_id}",
                    "unresolved value",
                    f"{err}; the resource is not imported",
                )
            )
            continue
        shaped = api_shape(properties)
        name_field = KINDS[kind][1]
        shaped.setdefault(name_field, logical_id)  # CloudFormation would generate a name
        resources.append((kind, shaped))
    if not resources:
        raise OperatorError(f"no AWS::AppMesh resources in {path}")
    return replace(group(resources, mesh), read_losses=tuple(losses))


def read_from(path: Path, mesh: str | None) -> AppMeshDefinitions:
    """A directory of describe-* outputs, or a CloudFormation template."""
    if path.is_dir():
        return read_describe_dir(path, mesh)
    return read_cloudformation(path, mesh)
