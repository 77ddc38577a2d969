"""Build: discovered namespaces -> every node's validated files (conventions, nodes, render,
validate), shared by the cycle and the offline preview.

A node whose files cannot be rendered or fail validation is a problem for that node only: it
keeps the files it had in ``previous`` (the version the store serves now), or is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from configurator.conventions import read_namespace
from configurator.discovery import RawNamespace
from configurator.errors import TemplateError
from configurator.mesh import NodeContext, build_nodes
from configurator.render import RenderCache, TemplateLibrary
from configurator.validate import Verdict
from shared.digest import sha256_hex
from shared.models import DiscoverySummary, FileEntry, NodeFiles, Problem


class NodeValidator(Protocol):
    """Checks one node's rendered files (``validate.EnvoyValidator`` runs Envoy itself)."""

    def validate(self, files: dict[str, bytes]) -> Verdict: ...


@dataclass
class BuiltMesh:
    """Every node's files (as index entries and their bytes), what was found, what failed."""

    nodes: dict[str, NodeFiles] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    failed_nodes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    service_colors: int = 0
    endpoints: int = 0

    def summary(self) -> DiscoverySummary:
        return DiscoverySummary(
            namespaces=self.namespaces,
            service_colors=self.service_colors,
            endpoints=self.endpoints,
            problems=self.problems,
        )

    def files_of(self, node_id: str) -> dict[str, bytes]:
        """The bytes of every file of a node built (not kept) in this build."""
        return {name: self.blobs[e.sha256] for name, e in self.nodes[node_id].items()}


def build_mesh(
    raw_namespaces: list[RawNamespace],
    templates: TemplateLibrary,
    validator: NodeValidator,
    cache: RenderCache,
    previous: Mapping[str, NodeFiles],
) -> BuiltMesh:
    """Run conventions -> nodes -> render -> validate for every namespace."""
    built = BuiltMesh(namespaces=[raw.name for raw in raw_namespaces])
    builder = _NodeBuilder(templates, validator, cache, previous)
    templates.reload()
    for raw in raw_namespaces:
        model, problems = read_namespace(raw)
        built.problems.extend(problems)
        built.service_colors += len(model.service_colors)
        built.endpoints += sum(len(sc.endpoints) for sc in model.service_colors)
        for node in build_nodes(model, built.problems):
            builder.build(node, built)
    cache.end_cycle()
    return built


@dataclass(frozen=True)
class _NodeBuilder:
    templates: TemplateLibrary
    validator: NodeValidator
    cache: RenderCache
    previous: Mapping[str, NodeFiles]

    def build(self, node: NodeContext, built: BuiltMesh) -> None:
        """Add ``node``'s files to ``built``, or its problem and (if any) its previous files."""
        files, error = self._files(node)
        if error is None:
            built.nodes[node.node_id] = {
                name: FileEntry(sha256=sha256_hex(data), size=len(data))
                for name, data in files.items()
            }
            built.blobs.update((sha256_hex(data), data) for data in files.values())
            return
        kept = self.previous.get(node.node_id)
        action = "previous files kept" if kept else "node not published"
        built.problems.append(
            Problem(where=node.node_id, item="rendered files", reason=f"{error} ({action})")
        )
        built.failed_nodes.append(node.node_id)
        if kept:
            built.nodes[node.node_id] = kept

    def _files(self, node: NodeContext) -> tuple[dict[str, bytes], str | None]:
        """The node's files and the first reason they cannot be published (None: they can)."""
        try:
            files = self.cache.render(self.templates.for_node(node), node)
        except TemplateError as err:
            return {}, str(err)
        verdict = self.validator.validate(files)
        return files, verdict.errors[0] if verdict.errors else None
