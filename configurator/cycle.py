"""One configurator cycle: scan -> conventions -> nodes -> render -> validate -> publish -> GC.

``Configurator`` keeps what carries over between cycles: rendered files by input digest (nodes
whose context and templates did not change are not rendered again), validation verdicts by file
digest, the problems seen last time (only new ones are logged), and the metrics.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from configurator.conventions import read_namespace
from configurator.discovery import DiscoverySource, RawNamespace
from configurator.errors import ConfiguratorError, TemplateError
from configurator.mesh import PER_NODE_FIELDS, NodeContext, build_nodes, q
from configurator.metrics import Metrics
from configurator.publish import Current, publish_version
from configurator.render import TemplateLibrary, render_node
from configurator.validate import EnvoyValidator
from shared import __version__
from shared.digest import sha256_hex
from shared.errors import ManifestConflictError, NightjarError
from shared.logs import get_logger
from shared.models import DiscoverySummary, FileEntry, Generator, NodeFiles, Problem
from shared.store import BundleStore

log = get_logger(__name__)

Outcome = Literal["published", "unchanged", "frozen", "failed"]
PROBE = "nightjar-render-probe-6f1d"  # stands in for per-node values to detect node-independence


@dataclass
class CycleReport:
    """What one cycle did; ``error`` is set when the outcome is ``failed``."""

    outcome: Outcome
    version: str | None = None
    changed_nodes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    uploaded: int = 0
    error: str = ""
    frozen_by: str | None = None


@dataclass(frozen=True)
class Retention:
    """How many versions to keep and how long every version is kept at least."""

    keep: int = 20
    grace: timedelta = timedelta(hours=1)


@dataclass
class _Built:
    nodes: dict[str, NodeFiles] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Configurator:
    """Runs cycles against one bundle store for a fixed list of namespaces."""

    def __init__(
        self,
        *,
        namespaces: list[str],
        store: BundleStore,
        discovery: DiscoverySource,
        templates: TemplateLibrary,
        validator: EnvoyValidator,
        retention: Retention | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.namespaces = namespaces
        self.store = store
        self.discovery = discovery
        self.templates = templates
        self.validator = validator
        self.retention = retention or Retention()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.generator = Generator(
            name="nightjar-configurator", version=__version__, host=socket.gethostname()
        )
        self._rendered: dict[str, dict[str, bytes]] = {}
        self._last_problems: set[Problem] = set()
        self._node_dependent: set[str] = set()  # shared keys whose renders use per-node fields

    def run_cycle(self) -> CycleReport:
        """One cycle; a lost manifest race redoes it once. Never raises for expected failures."""
        started = time.monotonic()
        try:
            try:
                report = self._cycle()
            except ManifestConflictError:
                log.warning("cycle.conflict", detail="another writer moved the manifest; redoing")
                report = self._cycle()
        except (NightjarError, ConfiguratorError) as err:
            report = CycleReport("failed", error=str(err))
        report.seconds = round(time.monotonic() - started, 3)
        self._record(report)
        return report

    def _cycle(self) -> CycleReport:
        read = self.store.read_manifest()
        if read is not None and read.manifest.frozen:
            m = read.manifest
            log.warning("cycle.frozen", version=m.version, by=m.frozen_by, reason=m.frozen_reason)
            return CycleReport("frozen", version=m.version, frozen_by=m.frozen_by)
        current = None
        if read is not None:
            index = self.store.get_index(read.manifest.version, read.manifest.index_sha256)
            current = Current(read, index)
        scan = self.discovery.scan(self.namespaces)
        built, summary = self._build(scan.namespaces, current)
        outcome = publish_version(
            self.store,
            built.nodes,
            built.blobs,
            summary,
            current,
            now=self.clock(),
            generator=self.generator,
        )
        report = CycleReport(
            outcome.status,
            outcome.version,
            outcome.changed_nodes,
            built.problems,
            calls=scan.calls,
            uploaded=outcome.uploaded,
        )
        if outcome.status == "published":
            self._collect_garbage()
        return report

    def _build(
        self, raw_namespaces: list[RawNamespace], current: Current | None
    ) -> tuple[_Built, DiscoverySummary]:
        built = _Built()
        colors = endpoints = 0
        self.templates.reload()
        rendered: dict[str, dict[str, bytes]] = {}
        for raw in raw_namespaces:
            model, problems = read_namespace(raw)
            built.problems.extend(problems)
            colors += len(model.service_colors)
            endpoints += sum(len(sc.endpoints) for sc in model.service_colors)
            for node in build_nodes(model, built.problems):
                self._build_node(node, built, current, rendered)
        self._rendered = rendered  # keep only what this cycle used
        summary = DiscoverySummary(
            namespaces=[raw.name for raw in raw_namespaces],
            service_colors=colors,
            endpoints=endpoints,
            problems=built.problems,
        )
        return built, summary

    def _build_node(
        self,
        node: NodeContext,
        built: _Built,
        current: Current | None,
        rendered: dict[str, dict[str, bytes]],
    ) -> None:
        try:
            files = self._render(node, rendered)
            verdict = self.validator.validate(files)
            errors = list(verdict.errors)
        except TemplateError as err:
            files, errors = {}, [str(err)]
        if not errors:
            built.nodes[node.node_id] = {
                name: FileEntry(sha256=sha256_hex(data), size=len(data))
                for name, data in files.items()
            }
            built.blobs.update((sha256_hex(data), data) for data in files.values())
            return
        kept = current.index.nodes.get(node.node_id) if current else None
        action = "previous files kept" if kept else "node not published"
        built.problems.append(
            Problem(where=node.node_id, item="rendered files", reason=f"{errors[0]} ({action})")
        )
        if kept:
            built.nodes[node.node_id] = kept

    def _render(self, node: NodeContext, rendered: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
        """Render ``node``, reusing any render of the same inputs.

        A render made with sentinel per-node values that contains no sentinel does not depend on
        the node, so it serves every node with the same shared context and templates.
        """
        templates = self.templates.for_node(node)
        shared_key = sha256_hex(f"{node.shared_digest}:{templates.digest()}".encode())
        own = [node.context.get(f) for f in PER_NODE_FIELDS]
        own_key = sha256_hex(f"{shared_key}:{own}".encode())
        for key in (shared_key, own_key):
            files = rendered.get(key) or self._rendered.get(key)
            if files is not None:
                rendered[key] = files
                return files
        if shared_key not in self._node_dependent:
            probe = {**node.context, **{f: q(PROBE) for f in PER_NODE_FIELDS if f in node.context}}
            probed = render_node(templates, replace(node, context=probe))
            if not any(PROBE.encode() in data for data in probed.values()):
                rendered[shared_key] = probed
                return probed
            self._node_dependent.add(shared_key)
        rendered[own_key] = render_node(templates, node)
        return rendered[own_key]

    def _collect_garbage(self) -> None:
        try:
            report = self.store.collect_garbage(
                keep=self.retention.keep, grace=self.retention.grace, now=self.clock()
            )
        except NightjarError as err:
            log.error("gc.failed", error=str(err))
            return
        if report.deleted_versions or report.deleted_objects:
            log.info(
                "gc.done",
                deleted_versions=len(report.deleted_versions),
                deleted_objects=len(report.deleted_objects),
            )

    def _record(self, report: CycleReport) -> None:
        m = self.metrics
        m.inc("nightjar_configurator_cycles_total", outcome=report.outcome)
        m.set("nightjar_configurator_cycle_seconds", report.seconds)
        m.inc("nightjar_configurator_cloudmap_calls_total", report.calls)
        m.set("nightjar_configurator_cloudmap_calls_last_cycle", report.calls)
        m.set("nightjar_configurator_manifest_frozen", 1 if report.outcome == "frozen" else 0)
        if report.outcome == "published":
            m.inc("nightjar_configurator_published_versions_total")
        if report.outcome in ("published", "unchanged"):
            m.set("nightjar_configurator_problems", len(report.problems))
            m.set("nightjar_configurator_last_success_timestamp_seconds", time.time())
            self._log_new_problems(report.problems)
        fields = {
            "outcome": report.outcome,
            "version": report.version,
            "changed_nodes": len(report.changed_nodes),
            "problems": len(report.problems),
            "calls": report.calls,
            "uploaded": report.uploaded,
            "seconds": report.seconds,
        }
        if report.outcome == "failed":
            log.error("cycle.done", error=report.error, **fields)
        else:
            log.info("cycle.done", **fields)

    def _log_new_problems(self, problems: list[Problem]) -> None:
        for problem in problems:
            if problem not in self._last_problems:
                log.warning(
                    "input.problem", where=problem.where, item=problem.item, reason=problem.reason
                )
        self._last_problems = set(problems)
