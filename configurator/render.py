"""Render: template sources + node context -> the node's files.

Templates come from the defaults shipped with nightjar, overridden per file by an operator's
directory (``NJ_TEMPLATES_DIR``). For a sidecar the most specific file wins among
``<ns>/<service>/<color>/``, ``<ns>/<service>/``, ``<ns>/`` and the defaults; for a gateway among
``<ns>/gateway/``, ``<ns>/`` and the defaults. Every template found is rendered and shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chevron

from configurator.errors import TemplateError
from configurator.mesh import NodeContext
from shared.digest import sha256_hex
from shared.models import FILE_NAME_RE, GATEWAY

MAX_TEMPLATE_BYTES = 1 << 20
# Rendered once per entry of the context's ``clusters`` (that cluster's fields over the node's)
# into the file the cluster's ``eds_file`` names; a render that is only whitespace ships nothing.
PER_CLUSTER_TEMPLATE = "eds.yaml"


def default_templates_dir() -> Path:
    """The templates shipped with nightjar (wheel: package data; checkout: ``templates/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "default_templates", here.parent / "templates"):
        if (candidate / "lds.yaml").is_file():
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

    def __init__(self, override_dir: Path | None = None, defaults: Path | None = None) -> None:
        self.override_dir = override_dir
        self.defaults = _load_dir(defaults or default_templates_dir())
        self._cache: dict[Path, dict[str, str]] = {}

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
    files = {}
    for name, source in sorted(templates.sources.items()):
        if name == PER_CLUSTER_TEMPLATE:
            files.update(_render_per_cluster(templates, node, source))
        else:
            files[name] = _render(templates, node, name, source, node.context).encode()
    return files


def _render_per_cluster(templates: TemplateSet, node: NodeContext, source: str) -> dict[str, bytes]:
    files = {}
    for cluster in node.context.get("clusters", []):
        text = _render(templates, node, PER_CLUSTER_TEMPLATE, source, {**node.context, **cluster})
        if text.strip():
            files[str(cluster["eds_file"])] = text.encode()
    return files


def _render(
    templates: TemplateSet, node: NodeContext, name: str, source: str, context: dict[str, Any]
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
        raise TemplateError(f"template {name} for node {node.node_id}: {err}") from err
