"""Build: discovered namespaces -> every node's validated files (conventions, nodes, render,
validate), shared by the cycle and the offline preview.

A node whose files cannot be rendered, fail validation or exceed the fetchers' size limit is a
problem for that node only: it keeps the entry it had in ``previous`` (the version the store
serves now), or is left out. Nodes carry their files as file sets (``render.FileSet``): sidecars
sharing a render share its sets, so a build costs O(nodes + distinct files). Any failure
while building one namespace, expected or not, is a problem for that namespace (its previous
nodes are kept), never a failed cycle for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from configurator.conventions import NamespaceModel, read_namespace
from configurator.discovery import RawNamespace
from configurator.errors import TemplateError
from configurator.mesh import NodeContext
from configurator.peers import MeshDirectory, build_linked_nodes
from configurator.render import FileSet, RenderCache, TemplateLibrary
from configurator.validate import Verdict
from shared.digest import sha256_hex
from shared.logs import get_logger
from shared.models import (
    MAX_OBJECT_BYTES,
    DiscoverySummary,
    NodeEntry,
    NodeFiles,
    Problem,
    VersionIndex,
)

log = get_logger(__name__)


class ModelStage(Protocol):
    """Between conventions and nodes (the cycle's shift stage rewrites route weights there)."""

    def prepare(self, models: Sequence[NamespaceModel]) -> list[Problem]:
        """Look at every namespace's validated model once, before any is changed; the
        problems are the mesh's (not one namespace's)."""

    def apply(self, model: NamespaceModel, problems: list[Problem]) -> NamespaceModel:
        """The model to build instead of ``model``; may add to ``problems``."""


class NodeValidator(Protocol):
    """Checks one node's rendered files (``validate.EnvoyValidator`` runs Envoy itself).

    ``submit`` may finish the check later (the future); ``key``, when given, identifies the
    content: equal keys, equal files."""

    def submit(self, files: dict[str, bytes], key: str | None = None) -> Future[Verdict]: ...


@dataclass
class BuiltMesh:
    """Every node's entry (its file sets by id), the sets, their bytes, what was found and what
    failed."""

    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    file_sets: dict[str, NodeFiles] = field(default_factory=dict)
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
        entry = self.nodes[node_id]
        listing = {n: e for set_id in entry.sets for n, e in self.file_sets[set_id].items()}
        return {name: self.blobs[e.sha256] for name, e in {**listing, **entry.files}.items()}

    def merge(self, other: BuiltMesh) -> None:
        """Add ``other``'s nodes, sets, bytes, problems and failures to this build."""
        self.nodes.update(other.nodes)
        self.file_sets.update(other.file_sets)
        self.blobs.update(other.blobs)
        self.problems.extend(other.problems)
        self.failed_nodes.extend(other.failed_nodes)

    def keep(self, node_id: str, previous: VersionIndex) -> None:
        """Carry ``node_id``'s entry (and the sets it names) over from ``previous``."""
        entry = previous.nodes[node_id]
        self.nodes[node_id] = entry
        self.file_sets.update((s, previous.file_sets[s]) for s in entry.sets)


def build_mesh(
    raw_namespaces: list[RawNamespace],
    templates: TemplateLibrary,
    validator: NodeValidator,
    cache: RenderCache,
    previous: VersionIndex | None,
    max_object_bytes: int = MAX_OBJECT_BYTES,
    stage: ModelStage | None = None,
) -> BuiltMesh:
    """Run conventions -> (``stage``) -> nodes -> render -> validate for every namespace.

    Every namespace is read first, so that sidecars peering with another served namespace
    (``PEERS``) see it whole (``peers.MeshDirectory``). Every namespace is then rendered and its
    distinct file sets submitted for validation before any verdict is awaited, so Envoy checks
    run in parallel with the rest of the build."""
    built = BuiltMesh(namespaces=[raw.name for raw in raw_namespaces])
    builder = _NodeBuilder(templates, validator, cache, previous, max_object_bytes)
    templates.reload()
    read: dict[str, tuple[NamespaceModel, list[Problem]]] = {}
    for raw in raw_namespaces:
        try:
            read[raw.name] = read_namespace(raw)
        except Exception as err:  # contained: one namespace, reported, kept
            _keep_namespace(raw.name, err, previous, built)
    if stage is not None:
        built.problems.extend(stage.prepare([model for model, _ in read.values()]))
        for name, (model, problems) in list(read.items()):
            try:
                read[name] = (stage.apply(model, problems), problems)
            except Exception as err:  # contained: one namespace, reported, kept
                del read[name]
                _keep_namespace(name, err, previous, built)
    directory = MeshDirectory({name: model for name, (model, _) in read.items()}, built.namespaces)
    digests = {name: sha256_hex(repr(r).encode()) for name, r in read.items()}
    pending = []
    for name, (model, problems) in read.items():
        try:
            key = _namespace_key(model, digests, directory, templates, max_object_bytes)
            reused = cache.namespace(key)
            scratch = reused or _render_namespace(model, problems, directory, builder)
            pending.append((name, key, scratch, reused))
        except Exception as err:  # contained: one namespace, reported, kept
            _keep_namespace(name, err, previous, built)
    for name, key, scratch, reused in pending:
        try:
            if reused is None:
                builder.finish(scratch)
                if not scratch.built.failed_nodes:  # kept nodes depend on the previous version
                    cache.remember_namespace(key, scratch, scratch.renders_used)
            built.merge(scratch.built)
            built.service_colors += scratch.service_colors
            built.endpoints += scratch.endpoints
        except Exception as err:  # contained: one namespace, reported, kept
            _keep_namespace(name, err, previous, built)
    cache.end_cycle()
    return built


def _namespace_key(
    model: NamespaceModel,
    digests: dict[str, str],
    directory: MeshDirectory,
    templates: TemplateLibrary,
    limit: int,
) -> str:
    """Everything a namespace's nodes are built from: its validated model and the problems
    found reading it (``digests``), those of every namespace its colors peer with (absent when
    not read), its templates, the size limit. Equal keys, equal builds."""
    peers = sorted({p.namespace.lower() for sc in model.service_colors for p in sc.peers})
    linked = [(p, digests.get(directory.served.get(p, p), "-")) for p in peers]
    own = digests[model.name]
    return f"{own}:{linked}:{templates.namespace_digest(model.name)}:{limit}"


@dataclass
class _Candidate:
    """A rendered node waiting for its verdict."""

    node: NodeContext
    sets: tuple[FileSet, ...]
    verdict: Future[Verdict] | None = None
    error: str | None = None


@dataclass
class _Scratch:
    """One namespace in the making: its rendered nodes, then its built nodes (kept by the
    render cache while its inputs stay the same, so an unchanged namespace is not rebuilt)."""

    built: BuiltMesh
    candidates: list[_Candidate]
    service_colors: int
    endpoints: int
    renders_used: tuple[set[str], set[str]] = field(default_factory=lambda: (set(), set()))


def _render_namespace(
    model: NamespaceModel, problems: list[Problem], directory: MeshDirectory, builder: _NodeBuilder
) -> _Scratch:
    """Render every node of one namespace and submit what it needs validated."""
    built = BuiltMesh()
    used = builder.cache.record()
    built.problems.extend(problems)
    nodes = build_linked_nodes(model, built.problems, directory)
    candidates = [builder.start(node, built) for node in nodes]
    endpoints = sum(len(sc.endpoints) for sc in model.service_colors)
    kept = [c for c in candidates if c]
    return _Scratch(built, kept, len(model.service_colors), endpoints, used)


def _keep_namespace(
    name: str, err: Exception, previous: VersionIndex | None, built: BuiltMesh
) -> None:
    """A namespace that failed to build keeps every node it had in ``previous``."""
    kept = sorted(n for n in (previous.nodes if previous else {}) if n.startswith(f"{name}/"))
    action = f"{len(kept)} node(s) keep their previous files" if kept else "nothing published"
    log.exception("namespace.build_failed", namespace=name, error=repr(err))
    built.problems.append(
        Problem(where=name, item="namespace", reason=f"build failed: {err!r} ({action})")
    )
    built.failed_nodes.extend(kept)
    for node_id in kept:
        assert previous is not None
        built.keep(node_id, previous)
    built.failed_namespaces.append(name)


@dataclass
class _NodeBuilder:
    templates: TemplateLibrary
    validator: NodeValidator
    cache: RenderCache
    previous: VersionIndex | None
    max_object_bytes: int = MAX_OBJECT_BYTES
    _checked: dict[str, str | None] = field(default_factory=dict)  # set id -> size problem
    _problems: dict[tuple[str, ...], str | None] = field(default_factory=dict)  # by set ids
    _submitted: dict[str, Future[Verdict]] = field(default_factory=dict)  # content -> verdict

    def start(self, node: NodeContext, built: BuiltMesh) -> _Candidate | None:
        """Render ``node`` and submit its files; a failure is the node's problem (None)."""
        try:
            candidate = self._render(node)
            if candidate.error is None:
                candidate.verdict = self._submit(candidate.sets)
        except Exception as err:  # contained: one node, reported
            log.exception("node.build_failed", node=node.node_id, error=repr(err))
            self._fail(node.node_id, f"build failed: {err!r}", built)
            return None
        if candidate.error is not None:
            self._fail(node.node_id, candidate.error, built)
            return None
        return candidate

    def _submit(self, sets: tuple[FileSet, ...]) -> Future[Verdict]:
        """The verdict on these sets' files, submitted once per build for equal content."""
        key = ":".join(s.id for s in sets)
        if key not in self._submitted:
            self._submitted[key] = self.validator.submit(_files(sets), key=key)
        return self._submitted[key]

    def finish(self, scratch: _Scratch) -> None:
        """Wait for every candidate's verdict; add each node or its problem."""
        for candidate in scratch.candidates:
            node_id = candidate.node.node_id
            try:
                assert candidate.verdict is not None
                verdict = candidate.verdict.result()
            except Exception as err:  # contained: one node, reported
                log.exception("node.build_failed", node=node_id, error=repr(err))
                self._fail(node_id, f"build failed: {err!r}", scratch.built)
                continue
            if verdict.errors:
                self._fail(node_id, verdict.errors[0], scratch.built)
                continue
            built = scratch.built
            built.nodes[node_id] = NodeEntry(sets=tuple(s.id for s in candidate.sets))
            for file_set in candidate.sets:
                if file_set.id not in built.file_sets:
                    built.file_sets[file_set.id] = file_set.entries
                    built.blobs.update(
                        (e.sha256, file_set.files[n]) for n, e in file_set.entries.items()
                    )

    def _fail(self, node_id: str, error: str, built: BuiltMesh) -> None:
        kept = self.previous is not None and node_id in self.previous.nodes
        action = "previous files kept" if kept else "node not published"
        built.problems.append(
            Problem(where=node_id, item="rendered files", reason=f"{error} ({action})")
        )
        built.failed_nodes.append(node_id)
        if kept:
            assert self.previous is not None
            built.keep(node_id, self.previous)

    def _render(self, node: NodeContext) -> _Candidate:
        """The node's file sets, with the first reason they cannot be published (if any)."""
        if node.unavailable:
            return _Candidate(node, (), error=node.unavailable)
        try:
            sets = self.cache.render(self.templates.for_node(node), node)
        except TemplateError as err:
            return _Candidate(node, (), error=str(err))
        key = tuple(s.id for s in sets)
        if key not in self._problems:
            self._problems[key] = _clash(sets) or next(
                (p for p in map(self._size_problem, sets) if p is not None), None
            )
        return _Candidate(node, sets, error=self._problems[key])

    def _size_problem(self, file_set: FileSet) -> str | None:
        if file_set.id not in self._checked:
            over = sorted(n for n, e in file_set.entries.items() if e.size > self.max_object_bytes)
            self._checked[file_set.id] = (
                f"{over[0]} is {file_set.entries[over[0]].size} bytes, over the fetchers' limit "
                f"of {self.max_object_bytes} (NJ_MAX_OBJECT_BYTES); split the mesh or raise it"
                if over
                else None
            )
        return self._checked[file_set.id]


def _clash(sets: tuple[FileSet, ...]) -> str | None:
    """Why these sets cannot be one node's files (a name in two of them), or None."""
    seen: set[str] = set()
    for file_set in sets:
        twice = sorted(seen & file_set.files.keys())
        if twice:
            return f"{twice[0]} is both a template and an endpoint file; rename it"
        seen |= file_set.files.keys()
    return None


def _files(sets: tuple[FileSet, ...]) -> dict[str, bytes]:
    return {name: data for file_set in sets for name, data in file_set.files.items()}
