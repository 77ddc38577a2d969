"""botocore's data files (service models, endpoints) read lean, for one client per session.

botocore's own loader parses every JSON data file into ``OrderedDict`` objects and keeps all
of ``endpoints.json`` (every AWS service in every partition) for the life of each client built
from the session. ``LeanModelFiles`` reads the same files from the same search paths into plain
``dict`` objects (insertion-ordered like ``OrderedDict``; botocore relies on nothing more) and
keeps, of ``endpoints.json``, only the services the session's one client can ask about: about
7 MB less per process for an S3 client (docs/performance.md). What botocore resolves
for those services (regions, endpoints, signing) is unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from botocore.loaders import JSONFileLoader

ENDPOINTS_FILE = "endpoints"  # botocore's legacy endpoint data, one entry per service
SERVICE_MODEL = "service-2"  # <service>/<api version>/service-2: the model of a client
# Clients the credential providers may build from the same session (AssumeRole, web
# identity, SSO): their endpoints are always kept.
CREDENTIAL_SERVICES = frozenset({"sts", "sso", "sso-oidc"})

EXTENSIONS = (".json", ".json.gz")  # botocore's, in its order


def _read(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as packed:
            return packed.read()
    with open(path, "rb") as plain:
        return plain.read()


class LeanModelFiles(JSONFileLoader):
    """botocore's JSON file loader, reading plain dicts; of ``endpoints.json`` it keeps only
    ``services``, the credential providers' services, and every service whose model it read
    before (by name and by ``endpointPrefix``: ``cloudwatch`` is ``monitoring`` there).

    ``operations`` (service -> operation names) cuts a service's model down to those
    operations and the shapes they reach: its clients have only those methods.
    """

    def __init__(
        self, services: Collection[str], operations: Mapping[str, Collection[str]] | None = None
    ) -> None:
        super().__init__()
        self.services = set(services) | CREDENTIAL_SERVICES
        self.operations = {name: frozenset(ops) for name, ops in (operations or {}).items()}

    def load_file(self, file_path: str) -> Any:
        """The parsed data file ``file_path`` (without extension), or None if there is none."""
        for ext in EXTENSIONS:
            path = file_path + ext
            if os.path.isfile(path):
                return self._parse(file_path, _read(path).decode("utf-8"))
        return None

    def _parse(self, file_path: str, text: str) -> Any:
        name = os.path.basename(file_path)
        if name == ENDPOINTS_FILE:
            return endpoints_of(text, frozenset(self.services))
        service = os.path.basename(os.path.dirname(os.path.dirname(file_path)))
        if name == SERVICE_MODEL and service in self.operations:
            data = model_of(text, self.operations[service])
        else:
            data = json.loads(text)
        if name == SERVICE_MODEL and isinstance(data, dict):
            prefix = data.get("metadata", {}).get("endpointPrefix")
            if isinstance(prefix, str):
                self.services.add(prefix)
        return data


def endpoints_of(text: str, services: frozenset[str]) -> Any:
    """``endpoints.json`` parsed with only ``services`` in each partition: every other service
    is decoded alone and dropped at once, so the whole file is never in memory as objects."""
    try:
        data, end = _object(text, 0, _top_level(services))
        if text[end:].strip():
            raise LayoutError(f"extra data after the endpoints object at {end}")
    except (LayoutError, IndexError):  # not the layout expected: parse it all, then cut
        return keep_services(json.loads(text), services)
    return data


def model_of(text: str, operations: frozenset[str]) -> Any:
    """A service model with only ``operations`` and the shapes they reach (the whole model if
    its layout is not the one expected). Every shape is decoded once, alone, to learn what it
    refers to; only those reached are kept."""
    try:
        model, offsets = _model_parts(text, operations)
    except (LayoutError, IndexError):
        return json.loads(text)
    missing = operations - model["operations"].keys()
    if missing:
        raise ValueError(f"operations {sorted(missing)} are not in the service model")
    needed = _reachable(model["operations"].values(), offsets)
    shapes = {name: at for name, (at, _) in offsets.items() if name in needed}
    model["shapes"] = {name: _DECODER.raw_decode(text, at)[0] for name, at in shapes.items()}
    return model


def _model_parts(
    text: str, operations: frozenset[str]
) -> tuple[dict[str, Any], dict[str, tuple[int, list[str]]]]:
    """The model without shapes, and each shape's offset and references."""
    offsets: dict[str, tuple[int, list[str]]] = {}

    def operation(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        value, end = _DECODER.raw_decode(text, at)
        return value, end, key in operations

    def shape(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        value, end = _DECODER.raw_decode(text, at)
        offsets[key] = (at, _shape_refs(value))
        return None, end, False

    def top(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        if key in ("operations", "shapes"):
            value, end = _object(text, at, operation if key == "operations" else shape)
            return value, end, True
        return _whole(key, text, at)

    model, end = _object(text, 0, top)
    if text[end:].strip() or "operations" not in model:
        raise LayoutError(f"not a service model: {end}")
    return model, offsets


def _shape_refs(shape: Any) -> list[str]:
    """The shape names a shape refers to (list member, map key and value, structure members)."""
    if not isinstance(shape, dict):
        return []
    refs = [shape[k]["shape"] for k in ("member", "key", "value") if isinstance(shape.get(k), dict)]
    members = shape.get("members")
    if isinstance(members, dict):
        refs += [m["shape"] for m in members.values() if isinstance(m, dict) and "shape" in m]
    return refs


def _reachable(operations: Iterable[Any], shapes: Mapping[str, tuple[int, list[str]]]) -> set[str]:
    todo = []
    for op in operations:
        todo += [op[k]["shape"] for k in ("input", "output") if isinstance(op.get(k), dict)]
        todo += [e["shape"] for e in op.get("errors", []) if isinstance(e, dict)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen and name in shapes:
            seen.add(name)
            todo += shapes[name][1]
    return seen


# -- a JSON object read member by member (values decoded by the json module) -------------------
_DECODER = json.JSONDecoder()
Member = Callable[[str, str, int], tuple[Any, int, bool]]  # (key, text, at) -> value, end, keep
Item = Callable[[str, int], tuple[Any, int]]  # (text, at) -> value, end


def _skip_space(text: str, at: int) -> int:
    while text[at] in " \t\n\r":
        at += 1
    return at


class LayoutError(ValueError):
    """The data file is JSON, but not laid out as expected: read it whole instead."""


def _expect(text: str, at: int, char: str) -> int:
    if text[at] != char:
        raise LayoutError(f"expected {char!r} at {at}")
    return _skip_space(text, at + 1)


def _object(text: str, at: int, member: Member) -> tuple[dict[str, Any], int]:
    """The object at ``at``, each member's value read by ``member``; and where it ends."""
    at = _expect(text, _skip_space(text, at), "{")
    out: dict[str, Any] = {}
    while text[at] != "}":
        key, at = _DECODER.raw_decode(text, at)
        at = _expect(text, _skip_space(text, at), ":")
        value, at, keep = member(key, text, at)
        if keep:
            out[key] = value
        at = _skip_space(text, at)
        if text[at] == ",":
            at = _skip_space(text, at + 1)
        elif text[at] != "}":
            raise LayoutError(f"expected ',' or '}}' at {at}")
    return out, at + 1


def _array(text: str, at: int, item: Item) -> tuple[list[Any], int]:
    at = _expect(text, _skip_space(text, at), "[")
    out: list[Any] = []
    while text[at] != "]":
        value, at = item(text, at)
        out.append(value)
        at = _skip_space(text, at)
        if text[at] == ",":
            at = _skip_space(text, at + 1)
        elif text[at] != "]":
            raise LayoutError(f"expected ',' or ']' at {at}")
    return out, at + 1


def _whole(key: str, text: str, at: int) -> tuple[Any, int, bool]:
    value, end = _DECODER.raw_decode(text, at)
    return value, end, True


def _top_level(services: frozenset[str]) -> Member:
    def service(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        value, end = _DECODER.raw_decode(text, at)
        return value, end, key in services

    def partition_member(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        if key != "services":
            return _whole(key, text, at)
        value, end = _object(text, at, service)
        return value, end, True

    def partition(text: str, at: int) -> tuple[Any, int]:
        return _object(text, at, partition_member)

    def top(key: str, text: str, at: int) -> tuple[Any, int, bool]:
        if key != "partitions":
            return _whole(key, text, at)
        value, end = _array(text, at, partition)
        return value, end, True

    return top


def keep_services(endpoints: Any, services: frozenset[str]) -> Any:
    """``endpoints.json`` data with each partition's ``services`` cut down to ``services``."""
    if not isinstance(endpoints, dict) or not isinstance(endpoints.get("partitions"), list):
        return endpoints
    partitions = []
    for partition in endpoints["partitions"]:
        if isinstance(partition, dict) and isinstance(partition.get("services"), dict):
            kept = {s: v for s, v in partition["services"].items() if s in services}
            partition = {**partition, "services": kept}
        partitions.append(partition)
    return {**endpoints, "partitions": partitions}
