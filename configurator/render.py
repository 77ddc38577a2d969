"""Render: template sources + node context -> the node's files.

Templates come from the defaults shipped with nightjar, overridden per file by an operator's
directory (``NJ_TEMPLATES_DIR``). For a sidecar the most specific file wins among
``<ns>/<service>/<color>/``, ``<ns>/<service>/``, ``<ns>/`` and the defaults; for a gateway among
``<ns>/gateway/``, ``<ns>/`` and the defaults. Every template found is rendered and shipped.

``RenderCache`` keeps renders across cycles, keyed by the context fields each template reads,
and shares one render between the sidecars of a namespace when a template does not read the
per-node fields (``mesh.PER_NODE_FIELDS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import chevron
import chevron.tokenizer

from configurator.errors import TemplateError
from configurator.mesh import PER_NODE_FIELDS, NodeContext
from shared.digest import sha256_hex
from shared.models import FILE_NAME_RE, GATEWAY, LDS_FILE, FileEntry, NodeFiles, file_set_id

MAX_TEMPLATE_BYTES = 1 << 20
# Rendered once per entry of the context's ``clusters`` (that cluster's fields over the node's)
# into the file the cluster's ``eds_file`` names; a render that is only whitespace ships nothing.
PER_CLUSTER_TEMPLATE = "eds.yaml"


def default_templates_dir() -> Path:
    """The templates shipped with nightjar (wheel: package data; checkout: ``templates/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "default_templates", here.parent / "templates"):
        if (candidate / LDS_FILE).is_file():
            return candidate
    raise TemplateError("default templates not found; reinstall nightjar-mesh")


@dataclass(frozen=True)
class TemplateSet:
    """The template sources one node renders: file name -> source."""

    sources: dict[str, str]

    def digest(self) -> str:
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return sha256_hex(json.dumps(self.sources, sort_keys=True).encode())


def _load_dir(directory: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name == "README.md":
            continue
        if not FILE_NAME_RE.match(path.name):
            raise TemplateError(f"template {path} has a name a bundle cannot carry; rename it")
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise TemplateError(f"template {path} is larger than {MAX_TEMPLATE_BYTES} bytes")
        try:
            found[path.name] = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise TemplateError(f"cannot read template {path}: {err}") from err
    return found


class TemplateLibrary:
    """Resolves each node's templates from the defaults and an optional override directory."""

    def __init__(self, defaults: dict[str, str], override_dir: Path | None = None) -> None:
        self.defaults = defaults
        self.override_dir = override_dir
        self._cache: dict[Path, dict[str, str]] = {}

    @classmethod
    def from_dir(
        cls, override_dir: Path | None = None, defaults_dir: Path | None = None
    ) -> TemplateLibrary:
        """Read the defaults (shipped ones unless ``defaults_dir``); overrides load per cycle.

        TemplateError if ``override_dir`` is not a directory (a typo must not silently fall back
        to the defaults)."""
        if override_dir is not None and not override_dir.is_dir():
            raise TemplateError(
                f"templates dir {override_dir} does not exist or is not a directory: check "
                "NJ_TEMPLATES_DIR / --templates-dir"
            )
        return cls(_load_dir(defaults_dir or default_templates_dir()), override_dir)

    def _dir(self, path: Path) -> dict[str, str]:
        if path not in self._cache:
            self._cache[path] = _load_dir(path)
        return self._cache[path]

    def search_path(self, node: NodeContext) -> list[Path]:
        """Override directories for ``node``, most specific first."""
        if self.override_dir is None:
            return []
        ns = self.override_dir / node.namespace
        if node.service is None or node.color is None:
            return [ns / GATEWAY, ns]
        return [ns / node.service / node.color, ns / node.service, ns]

    def for_node(self, node: NodeContext) -> TemplateSet:
        """Per file name, the most specific template found for ``node``."""
        sources = dict(self.defaults)
        for directory in reversed(self.search_path(node)):
            sources.update(self._dir(directory))
        return TemplateSet(sources)

    def reload(self) -> None:
        """Forget cached override directories (called once per cycle)."""
        self._cache.clear()

    def namespace_digest(self, namespace: str) -> str:
        """A digest of every template any node of ``namespace`` can use (defaults included)."""
        parts: list[tuple[str, dict[str, str]]] = [("", self.defaults)]
        root = self.override_dir / namespace if self.override_dir is not None else None
        if root is not None and root.is_dir():
            directories = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
            parts += [(str(d.relative_to(root)), self._dir(d)) for d in directories]
        return sha256_hex(json.dumps(parts, sort_keys=True).encode())


def render_node(templates: TemplateSet, node: NodeContext) -> dict[str, bytes]:
    """Render every template of ``node``; TemplateError names the failing file."""
    return _render(templates, node.context, node.node_id)


def _render(templates: TemplateSet, context: dict[str, Any], node_id: str) -> dict[str, bytes]:
    files = {}
    for name, source in sorted(templates.sources.items()):
        if name == PER_CLUSTER_TEMPLATE:
            for cluster in context.get("clusters", []):
                rendered = _render_cluster(templates, source, context, cluster, node_id)
                if rendered is not None:
                    files[str(cluster["eds_file"])] = rendered
        else:
            files[name] = _render_one(templates, name, source, context, node_id).encode()
    return files


def _render_cluster(
    templates: TemplateSet,
    source: str,
    context: dict[str, Any],
    cluster: dict[str, Any],
    node_id: str,
) -> bytes | None:
    """One cluster's endpoint file, or None when the render is only whitespace."""
    merged = {**context, **cluster}
    text = _render_one(templates, PER_CLUSTER_TEMPLATE, source, merged, node_id)
    return text.encode() if text.strip() else None


def _render_one(
    templates: TemplateSet, name: str, source: str, context: dict[str, Any], node_id: str
) -> str:
    try:
        return chevron.render(
            source,
            context,
            partials_path=None,  # partials come from this node's templates, never from disk
            partials_dict=templates.sources,
            warn=False,
        )
    except Exception as err:  # chevron raises bare exceptions for syntax errors
        raise TemplateError(f"template {name} for node {node_id}: {err}") from err


def referenced_names(source: str, partials: dict[str, str]) -> frozenset[str] | None:
    """Every context name a template (with the partials it includes) can look up: the first
    part of each tag's name, wherever it stands. None when the template does not tokenize
    (its render will fail and say why)."""
    names: set[str] = set()
    pending, seen = [source], set()
    while pending:
        try:
            tokens = list(chevron.tokenizer.tokenize(pending.pop()))
        except Exception:  # chevron raises bare exceptions for syntax errors
            return None
        for kind, key in tokens:
            if kind in ("variable", "no escape", "section", "inverted section") and key != ".":
                names.add(key.split(".", 1)[0])
            elif kind == "partial" and key in partials and key not in seen:
                seen.add(key)
                pending.append(partials[key])
    return frozenset(names)


@dataclass(frozen=True)
class FileSet:
    """Rendered files that travel together (the index lists them once, under ``id``)."""

    files: dict[str, bytes]
    entries: NodeFiles
    id: str

    @classmethod
    def of(cls, files: dict[str, bytes]) -> FileSet:
        entries = {name: FileEntry(sha256=sha256_hex(d), size=len(d)) for name, d in files.items()}
        return cls(files, entries, file_set_id(entries))


_V = TypeVar("_V")


def _carry(generations: tuple[dict[str, _V], dict[str, _V]], keys: set[str]) -> None:
    """Move ``keys`` from the last cycle's generation into this cycle's."""
    old, new = generations
    new.update((k, old[k]) for k in keys if k in old and k not in new)


@dataclass(frozen=True)
class _Plan:
    """What one template reads: shared fields and per-node fields (None: unknown, so all)."""

    source: str
    shared: tuple[str, ...] | None
    per_node: tuple[str, ...]

    @cached_property
    def source_digest(self) -> str:
        return sha256_hex(self.source.encode())


class RenderCache:
    """Renders by their inputs, kept from one cycle to the next.

    Every template is rendered from the context fields it references (``referenced_names``):
    its render is keyed by the digests of exactly those fields, so a change re-renders only the
    templates (and, for ``eds.yaml``, only the clusters) that read what changed. A template that
    references no per-node field (``mesh.PER_NODE_FIELDS``) renders once for every sidecar of a
    namespace. A node's files come back as two file sets: its main files and its endpoint files.
    """

    def __init__(self) -> None:
        self._files: tuple[dict[str, bytes | None], dict[str, bytes | None]] = ({}, {})
        self._sets: tuple[dict[str, FileSet], dict[str, FileSet]] = ({}, {})
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._shadow: dict[int, tuple[list[dict[str, Any]], frozenset[str]]] = {}
        self._projections: dict[tuple[int, tuple[str, ...]], tuple[list[dict[str, Any]], str]] = {}
        self._namespaces: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._used: tuple[set[str], set[str]] = (set(), set())
        self.renders = 0  # chevron renders made (one per file), for tests and the bench

    def render(self, templates: TemplateSet, node: NodeContext) -> tuple[FileSet, ...]:
        """``node``'s file sets (main, then endpoint files when there are any)."""
        sets = [self._main_set(templates, node)]
        if PER_CLUSTER_TEMPLATE in templates.sources and node.shared.get("clusters"):
            endpoint_files = self._cluster_set(templates, node)
            if endpoint_files.files:
                sets.append(endpoint_files)
        return tuple(sets)

    def namespace(self, key: str) -> Any:
        """A whole namespace's build remembered under ``key`` (``build`` owns its shape); its
        renders stay cached as if this cycle had made them."""
        found = self._namespaces[1].get(key) or self._namespaces[0].get(key)
        if found is None:
            return None
        self._namespaces[1][key] = found
        built, file_keys, set_keys = found
        _carry(self._files, file_keys)
        _carry(self._sets, set_keys)
        return built

    def record(self) -> tuple[set[str], set[str]]:
        """Record the renders used from now on (until the next call) into the returned sets."""
        self._used = (set(), set())
        return self._used

    def remember_namespace(self, key: str, built: Any, used: tuple[set[str], set[str]]) -> None:
        """Keep a namespace's build, and the renders it used (``record``), for the next cycle
        with the same inputs."""
        self._namespaces[1][key] = (built, *used)

    def end_cycle(self) -> None:
        """Keep only the renders this cycle used."""
        self._namespaces = (self._namespaces[1], {})
        self._files = (self._files[1], {})
        self._sets = (self._sets[1], {})
        self._plans.clear()
        self._shadow.clear()
        self._projections.clear()

    def _plan(self, templates: TemplateSet, name: str) -> _Plan:
        key = (templates.digest(), name)
        if key not in self._plans:
            source = templates.sources[name]
            names = referenced_names(source, templates.sources)
            if names is None:
                self._plans[key] = _Plan(source, None, PER_NODE_FIELDS)
            else:
                per_node = tuple(f for f in PER_NODE_FIELDS if f in names)
                shared = tuple(sorted(names - set(PER_NODE_FIELDS)))
                self._plans[key] = _Plan(source, shared, per_node)
        return self._plans[key]

    def _inputs(self, plan: _Plan, node: NodeContext, skip: frozenset[str] = frozenset()) -> str:
        """A digest of what ``plan`` reads from ``node``'s context (``skip``: shadowed names)."""
        fields = node.digests.fields
        shared = sorted(fields) if plan.shared is None else plan.shared
        own = node.per_node
        used: list[tuple[str, Any]] = [
            (f, self._clusters_read(node, plan.shared) if f == "clusters" else fields[f])
            for f in shared
            if f in fields and f not in skip
        ]
        used += [(f, own.get(f)) for f in plan.per_node if f not in skip]
        return sha256_hex(json.dumps([plan.source_digest, used]).encode())

    def _clusters_read(self, node: NodeContext, names: tuple[str, ...] | None) -> str:
        """A digest of the ``clusters`` entries' fields among ``names`` (all when None): a
        template listing clusters is not rendered again when only fields it never names change
        (a cluster file, for an endpoint change)."""
        if names is None:
            return node.digests.fields["clusters"]
        clusters: list[dict[str, Any]] = node.shared["clusters"]
        memo = self._projections.get((id(clusters), names))
        if memo is None or memo[0] is not clusters:
            wanted = set(names)
            parts = [
                json.dumps({k: v for k, v in c.items() if k in wanted}, sort_keys=True)
                for c in clusters
            ]
            memo = (clusters, sha256_hex("\n".join(parts).encode()))
            self._projections[(id(clusters), names)] = memo
        return memo[1]

    def _lookup(self, key: str) -> tuple[bool, bytes | None]:
        self._used[0].add(key)
        for generation in (self._files[1], self._files[0]):
            if key in generation:
                self._files[1][key] = generation[key]
                return True, generation[key]
        return False, None

    def _set_lookup(self, key: str) -> FileSet | None:
        self._used[1].add(key)
        found = self._sets[1].get(key) or self._sets[0].get(key)
        if found is not None:
            self._sets[1][key] = found
        return found

    def _shadowed(self, clusters: list[dict[str, Any]]) -> frozenset[str]:
        """The names every cluster entry defines (they hide the node's fields of that name)."""
        memo = self._shadow.get(id(clusters))
        if memo is None or memo[0] is not clusters:
            memo = (clusters, frozenset.intersection(*(frozenset(c) for c in clusters)))
            self._shadow[id(clusters)] = memo
        return memo[1]

    def _main_set(self, templates: TemplateSet, node: NodeContext) -> FileSet:
        names = sorted(n for n in templates.sources if n != PER_CLUSTER_TEMPLATE)
        inputs = [(n, self._inputs(self._plan(templates, n), node)) for n in names]
        set_key = sha256_hex(json.dumps(["main", inputs]).encode())
        found = self._set_lookup(set_key)
        if found is not None:
            return found
        files = {}
        for name, key in inputs:
            hit, data = self._lookup(key)
            if not hit:
                self.renders += 1
                source = templates.sources[name]
                data = _render_one(templates, name, source, node.context, node.node_id).encode()
                self._files[1][key] = data
            assert data is not None
            files[name] = data
        self._sets[1][set_key] = FileSet.of(files)
        return self._sets[1][set_key]

    def _cluster_set(self, templates: TemplateSet, node: NodeContext) -> FileSet:
        plan = self._plan(templates, PER_CLUSTER_TEMPLATE)
        clusters: list[dict[str, Any]] = node.shared["clusters"]
        base = self._inputs(plan, node, self._shadowed(clusters))
        set_key = sha256_hex(f"clusters:{base}:{node.digests.fields['clusters']}".encode())
        found = self._set_lookup(set_key)
        if found is not None:
            return found
        files = {}
        context = None
        for cluster, digest in zip(clusters, node.digests.clusters, strict=True):
            key = sha256_hex(f"{base}:{digest}".encode())
            hit, data = self._lookup(key)
            if not hit:
                self.renders += 1
                context = context or node.context
                data = _render_cluster(templates, plan.source, context, cluster, node.node_id)
                self._files[1][key] = data
            if data is not None:
                files[str(cluster["eds_file"])] = data
        self._sets[1][set_key] = FileSet.of(files)
        return self._sets[1][set_key]
