"""Render: template sources + node context -> the node's files.

Templates come from the defaults shipped with nightjar, overridden per file by an operator's
directory (``NJ_TEMPLATES_DIR``). For a sidecar the most specific file wins among
``<ns>/<service>/<color>/``, ``<ns>/<service>/``, ``<ns>/`` and the defaults; for a gateway among
``<ns>/gateway/``, ``<ns>/`` and the defaults. Every template found is rendered and shipped.

``RenderCache`` keeps renders across cycles and shares one render between the sidecars of a
namespace when their templates do not use the per-node fields (``mesh.PER_NODE_FIELDS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chevron

from configurator.errors import TemplateError
from configurator.mesh import NodeContext, q
from shared.digest import sha256_hex
from shared.models import FILE_NAME_RE, GATEWAY, LDS_FILE

MAX_TEMPLATE_BYTES = 1 << 20
PROBE = "nightjar-render-probe-6f1d"  # stands in for per-node values to detect node-independence
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


def render_node(templates: TemplateSet, node: NodeContext) -> dict[str, bytes]:
    """Render every template of ``node``; TemplateError names the failing file."""
    return _render(templates, node.context, node.node_id)


def _render(templates: TemplateSet, context: dict[str, Any], node_id: str) -> dict[str, bytes]:
    files = {}
    for name, source in sorted(templates.sources.items()):
        if name == PER_CLUSTER_TEMPLATE:
            files.update(_render_per_cluster(templates, source, context, node_id))
        else:
            files[name] = _render_one(templates, name, source, context, node_id).encode()
    return files


def _render_per_cluster(
    templates: TemplateSet, source: str, context: dict[str, Any], node_id: str
) -> dict[str, bytes]:
    files = {}
    for cluster in context.get("clusters", []):
        merged = {**context, **cluster}
        text = _render_one(templates, PER_CLUSTER_TEMPLATE, source, merged, node_id)
        if text.strip():
            files[str(cluster["eds_file"])] = text.encode()
    return files


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


class RenderCache:
    """Renders by their inputs, kept from one cycle to the next.

    The rule that lets sidecars share a render: a node's context is ``node.shared`` (identified
    by ``node.shared_digest``) plus its ``mesh.PER_NODE_FIELDS`` and nothing else. A render made
    with a sentinel in every per-node field whose output holds no sentinel therefore does not
    depend on the node: it serves every node with the same shared digest and templates. Otherwise
    that shared key is remembered as node-dependent and each node is rendered with its own values.
    """

    def __init__(self) -> None:
        self._previous: dict[str, dict[str, bytes]] = {}
        self._current: dict[str, dict[str, bytes]] = {}
        self._node_dependent: set[str] = set()
        self.renders = 0  # chevron renders made (probes included), for tests and the bench

    def render(self, templates: TemplateSet, node: NodeContext) -> dict[str, bytes]:
        """``node``'s files, rendered only when no earlier render had the same inputs."""
        shared_key = sha256_hex(f"{node.shared_digest}:{templates.digest()}".encode())
        own_key = sha256_hex(f"{shared_key}:{sorted(node.per_node.items())}".encode())
        for key in (shared_key, own_key):
            files = self._current.get(key) or self._previous.get(key)
            if files is not None:
                self._current[key] = files
                return files
        if shared_key not in self._node_dependent:
            probed = self._probe(templates, node)
            if probed is not None:
                self._current[shared_key] = probed
                return probed
            self._node_dependent.add(shared_key)
        self.renders += 1
        self._current[own_key] = render_node(templates, node)
        return self._current[own_key]

    def _probe(self, templates: TemplateSet, node: NodeContext) -> dict[str, bytes] | None:
        """The render with sentinel per-node values, or None when the sentinel shows."""
        self.renders += 1
        sentinels = {field: q(PROBE) for field in node.per_node}
        probed = _render(templates, {**node.shared, **sentinels}, node.node_id)
        if any(PROBE.encode() in data for data in probed.values()):
            return None
        return probed

    def end_cycle(self) -> None:
        """Keep only the renders this cycle used."""
        self._previous, self._current = self._current, {}
