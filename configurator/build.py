"""Build: discovered namespaces -> every node's validated files (conventions, nodes, render,
validate), shared by the cycle and the offline preview.

A node whose files cannot be rendered, fail validation or exceed the fetchers' size limit is a
problem for that node only: it keeps the files it had in ``previous`` (the version the store
serves now), or is left out. Any failure while building one namespace, expected or not, is a
problem for that namespace (its previous nodes are kept), never a failed cycle for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from configurator.conventions import NamespaceModel, read_namespace
from configurator.discovery import RawNamespace
from configurator.errors import TemplateError
from configurator.mesh import NodeContext, build_nodes
from configurator.render import RenderCache, TemplateLibrary
from configurator.validate import Verdict
from shared.digest import sha256_hex
from shared.logs import get_logger
from shared.models import MAX_OBJECT_BYTES, DiscoverySummary, FileEntry, NodeFiles, Problem

log = get_logger(__name__)

# Between conventions and nodes: a validated model -> the model to build (the cycle's shift
# stage rewrites route weights there); it may add problems.
ModelStage = Callable[[NamespaceModel, list[Problem]], NamespaceModel]


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
    failed_namespaces: list[str] = field(default_factory=list)
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
    max_object_bytes: int = MAX_OBJECT_BYTES,
    stage: ModelStage | None = None,
) -> BuiltMesh:
    """Run conventions -> (``stage``) -> nodes -> render -> validate for every namespace."""
    built = BuiltMesh(namespaces=[raw.name for raw in raw_namespaces])
    builder = _NodeBuilder(templates, validator, cache, previous, max_object_bytes)
    templates.reload()
    for raw in raw_namespaces:
        try:
            _build_namespace(raw, builder, built, stage)
        except Exception as err:  # contained: one namespace, reported, kept
            _keep_namespace(raw.name, err, previous, built)
    cache.end_cycle()
    return built


def _build_namespace(
    raw: RawNamespace, builder: _NodeBuilder, built: BuiltMesh, stage: ModelStage | None
) -> None:
    """Add every node of one namespace to ``built`` (into a scratch copy until it succeeds)."""
    scratch = BuiltMesh()
    model, problems = read_namespace(raw)
    scratch.problems.extend(problems)
    if stage is not None:
        model = stage(model, scratch.problems)
    for node in build_nodes(model, scratch.problems):
        builder.build(node, scratch)
    built.nodes.update(scratch.nodes)
    built.blobs.update(scratch.blobs)
    built.problems.extend(scratch.problems)
    built.failed_nodes.extend(scratch.failed_nodes)
    built.service_colors += len(model.service_colors)
    built.endpoints += sum(len(sc.endpoints) for sc in model.service_colors)


def _keep_namespace(
    name: str, err: Exception, previous: Mapping[str, NodeFiles], built: BuiltMesh
) -> None:
    """A namespace that failed to build keeps every node it had in ``previous``."""
    kept = {n: files for n, files in previous.items() if n.startswith(f"{name}/")}
    action = f"{len(kept)} node(s) keep their previous files" if kept else "nothing published"
    log.exception("namespace.build_failed", namespace=name, error=repr(err))
    built.problems.append(
        Problem(where=name, item="namespace", reason=f"build failed: {err!r} ({action})")
    )
    built.failed_nodes.extend(sorted(kept))
    built.failed_namespaces.append(name)
    built.nodes.update(kept)


@dataclass(frozen=True)
class _NodeBuilder:
    templates: TemplateLibrary
    validator: NodeValidator
    cache: RenderCache
    previous: Mapping[str, NodeFiles]
    max_object_bytes: int = MAX_OBJECT_BYTES

    def build(self, node: NodeContext, built: BuiltMesh) -> None:
        """Add ``node``'s files to ``built``, or its problem and (if any) its previous files."""
        try:
            files, error = self._files(node)
        except Exception as err:  # contained: one node, reported
            log.exception("node.build_failed", node=node.node_id, error=repr(err))
            files, error = {}, f"build failed: {err!r}"
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
        oversized = sorted(n for n, data in files.items() if len(data) > self.max_object_bytes)
        if oversized:
            size = len(files[oversized[0]])
            return files, (
                f"{oversized[0]} is {size} bytes, over the fetchers' limit of "
                f"{self.max_object_bytes} (NJ_MAX_OBJECT_BYTES); split the mesh or raise it"
            )
        verdict = self.validator.validate(files)
        return files, verdict.errors[0] if verdict.errors else None
