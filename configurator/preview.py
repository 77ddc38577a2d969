"""Offline preview: a mesh description -> every node's validated files, no store and no AWS.

The ``nightjar render`` and ``nightjar validate`` commands reach the configurator only through
this module. Rendering runs the same conventions -> nodes -> render -> validate path as a cycle
(``build.build_mesh``), so a preview shows exactly what the configurator would publish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configurator.build import BuiltMesh, NodeValidator, build_mesh
from configurator.discovery import RawNamespace
from configurator.errors import ConfiguratorError
from configurator.mesh_file import load_mesh_file
from configurator.peers import PEER_PREFIX, peer_cluster_prefix
from configurator.render import RenderCache, TemplateLibrary
from configurator.validate import EnvoyValidator, parse_files
from shared.models import Problem


@dataclass(frozen=True)
class RenderedMesh:
    """Every node that rendered and validated, and the problems found.

    A node's files come in file sets (its own templates' files first, then its endpoint files);
    sidecars sharing a render share the sets, so the mesh is held once, not once per node."""

    built: BuiltMesh
    problems: list[Problem]
    peer_listeners: dict[str, list[PeerListener]] = field(default_factory=dict)

    @property
    def node_ids(self) -> list[str]:
        return sorted(self.built.nodes)

    def files_of(self, node: str) -> dict[str, bytes]:
        """Every file of ``node`` (file name -> bytes)."""
        return self.built.files_of(node)

    def set_ids(self, node: str) -> tuple[str, ...]:
        """``node``'s file sets in order (its templates' files first)."""
        return self.built.nodes[node].sets

    def set_files(self, set_id: str) -> dict[str, tuple[str, bytes]]:
        """A file set's files: file name -> (sha256, bytes)."""
        built = self.built
        return {n: (e.sha256, built.blobs[e.sha256]) for n, e in built.file_sets[set_id].items()}


@dataclass(frozen=True)
class PeerListener:
    """A listener of a rendered node reaching another mesh (``PEERS``)."""

    namespace: str
    port: int
    through_gateway: bool

    def describe(self) -> str:
        how = f"through {self.namespace}'s gateway" if self.through_gateway else "direct"
        return f"port {self.port} -> {self.namespace} ({how})"


def peer_listeners(files: Mapping[str, bytes]) -> list[PeerListener]:
    """The peer listeners in a node's rendered ``lds.yaml`` (none when it does not parse)."""
    try:
        doc = parse_files({"lds.yaml": files.get("lds.yaml", b"")})[0]["lds.yaml"]
        found = []
        for listener in doc["resources"]:
            name = str(listener.get("name", ""))
            if name.startswith(PEER_PREFIX):
                namespace = name.removeprefix(PEER_PREFIX)
                port = int(listener["address"]["socket_address"]["port_value"])
                gateway = f"{peer_cluster_prefix(namespace)}gateway"
                found.append(PeerListener(namespace, port, gateway in _clusters_of(listener)))
        return found
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


def _clusters_of(listener: dict[str, Any]) -> set[str]:
    config = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return {
        str((route.get("route") or {}).get("cluster"))
        for vhost in config["route_config"]["virtual_hosts"]
        for route in vhost["routes"]
    }


def render_mesh(
    raw_namespaces: list[RawNamespace], templates: TemplateLibrary, validator: NodeValidator
) -> RenderedMesh:
    """Render and validate every node; a failing node is left out and named in ``problems``."""
    built = build_mesh(raw_namespaces, templates, validator, RenderCache(), previous=None)
    by_set: dict[str, list[PeerListener]] = {}  # sidecars sharing a render share its listeners
    peers = {}
    for node, entry in built.nodes.items():
        own = entry.sets[0] if entry.sets else ""
        if own not in by_set:
            lds = {n: built.blobs[e.sha256] for n, e in built.file_sets.get(own, {}).items()}
            has_peers = PEER_PREFIX.encode() in lds.get("lds.yaml", b"")
            by_set[own] = peer_listeners(lds) if has_peers else []
        if by_set[own]:
            peers[node] = by_set[own]
    return RenderedMesh(built, built.problems, peers)


def render_mesh_file(
    mesh_files: Path | Sequence[Path], templates_dir: Path | None, envoy: Path | None
) -> RenderedMesh:
    """``render_mesh`` for YAML mesh files (docs/cli.md), validated with ``envoy`` if given;
    namespaces of several files are served together (their sidecars may peer)."""
    paths = [mesh_files] if isinstance(mesh_files, Path) else list(mesh_files)
    namespaces: list[RawNamespace] = []
    for path in paths:
        for ns in load_mesh_file(path):
            if any(seen.name == ns.name for seen in namespaces):
                raise ConfiguratorError(
                    f"mesh file {path}: namespace {ns.name} is already in another mesh file;"
                    " describe each namespace once"
                )
            namespaces.append(ns)
    return render_mesh(namespaces, TemplateLibrary.from_dir(templates_dir), EnvoyValidator(envoy))


def validate_nodes(nodes: Mapping[str, dict[str, bytes]], envoy: Path) -> dict[str, str | None]:
    """For every node, the first reason its files fail validation (None: they pass)."""
    validator = EnvoyValidator(envoy)
    verdicts = {node: validator.validate(files) for node, files in nodes.items()}
    return {node: v.errors[0] if v.errors else None for node, v in verdicts.items()}
