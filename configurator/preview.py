"""Offline preview: a mesh description -> every node's validated files, no store and no AWS.

The ``nightjar render`` and ``nightjar validate`` commands reach the configurator only through
this module. Rendering runs the same conventions -> nodes -> render -> validate path as a cycle
(``build.build_mesh``), so a preview shows exactly what the configurator would publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from configurator.build import BuiltMesh, NodeValidator, build_mesh
from configurator.discovery import RawNamespace
from configurator.mesh_file import load_mesh_file
from configurator.render import RenderCache, TemplateLibrary
from configurator.validate import EnvoyValidator
from shared.models import Problem


@dataclass(frozen=True)
class RenderedMesh:
    """Every node that rendered and validated, and the problems found.

    A node's files come in file sets (its own templates' files first, then its endpoint files);
    sidecars sharing a render share the sets, so the mesh is held once, not once per node."""

    built: BuiltMesh
    problems: list[Problem]

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


def render_mesh(
    raw_namespaces: list[RawNamespace], templates: TemplateLibrary, validator: NodeValidator
) -> RenderedMesh:
    """Render and validate every node; a failing node is left out and named in ``problems``."""
    built = build_mesh(raw_namespaces, templates, validator, RenderCache(), previous=None)
    return RenderedMesh(built, built.problems)


def render_mesh_file(
    mesh_file: Path, templates_dir: Path | None, envoy: Path | None
) -> RenderedMesh:
    """``render_mesh`` for a YAML mesh file (docs/cli.md), validated with ``envoy`` if given."""
    return render_mesh(
        load_mesh_file(mesh_file), TemplateLibrary.from_dir(templates_dir), EnvoyValidator(envoy)
    )


def validate_nodes(nodes: Mapping[str, dict[str, bytes]], envoy: Path) -> dict[str, str | None]:
    """For every node, the first reason its files fail validation (None: they pass)."""
    validator = EnvoyValidator(envoy)
    verdicts = {node: validator.validate(files) for node, files in nodes.items()}
    return {node: v.errors[0] if v.errors else None for node, v in verdicts.items()}
