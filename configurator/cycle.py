"""One configurator cycle: scan -> conventions -> nodes -> render -> validate -> publish -> GC.

``Configurator`` runs the stages in that order and keeps what carries over between cycles: the
render cache (``render.RenderCache``), the validator's verdicts, the problems seen last time
(only new ones are logged) and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from configurator.build import NodeValidator, build_mesh
from configurator.discovery import DiscoverySource
from configurator.errors import ConfiguratorError
from configurator.metrics import Metrics, record_cycle
from configurator.publish import Current, publish_version
from configurator.render import RenderCache, TemplateLibrary
from configurator.report import CycleReport
from shared.errors import ManifestConflictError, NightjarError
from shared.logs import get_logger
from shared.models import Generator, Problem
from shared.store import BundleStore

log = get_logger(__name__)


@dataclass(frozen=True)
class Retention:
    """How many versions to keep and how long every version is kept at least."""

    keep: int = 20
    grace: timedelta = timedelta(hours=1)


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
        validator: NodeValidator,
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
        self.generator = Generator.here("nightjar-configurator")
        self.renders = RenderCache()
        self._last_problems: set[Problem] = set()

    def run_cycle(self) -> CycleReport:
        """One cycle; a lost manifest race redoes it once. Never raises for expected failures."""
        started, calls_before = time.monotonic(), self.discovery.calls_made()
        try:
            try:
                report = self._cycle()
            except ManifestConflictError:
                log.warning("cycle.conflict", detail="another writer moved the manifest; redoing")
                report = self._cycle()
        except (NightjarError, ConfiguratorError) as err:
            report = CycleReport("failed", error=str(err))
        report.seconds = round(time.monotonic() - started, 3)
        report.calls = self.discovery.calls_made() - calls_before  # failed cycles' calls too
        record_cycle(self.metrics, report)
        self._log(report)
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
        previous = current.index.nodes if current else {}
        built = build_mesh(scan.namespaces, self.templates, self.validator, self.renders, previous)
        outcome = publish_version(
            self.store,
            built.nodes,
            built.blobs,
            built.summary(),
            current,
            now=self.clock(),
            generator=self.generator,
        )
        if outcome.status == "published":
            self._collect_garbage()
        return CycleReport(
            outcome.status,
            outcome.version,
            outcome.changed_nodes,
            built.problems,
            uploaded=outcome.uploaded,
            failed_nodes=built.failed_nodes,
        )

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

    def _log(self, report: CycleReport) -> None:
        if report.outcome in ("published", "unchanged"):
            self._log_new_problems(report)
        if report.outcome == "failed":
            log.error("cycle.done", error=report.error, **report.log_fields())
        else:
            log.info("cycle.done", **report.log_fields())

    def _log_new_problems(self, report: CycleReport) -> None:
        failed = set(report.failed_nodes)
        for problem in report.problems:
            if problem in self._last_problems:
                continue
            logger = log.bind(node=problem.where) if problem.where in failed else log
            logger.warning(
                "input.problem", where=problem.where, item=problem.item, reason=problem.reason
            )
        self._last_problems = set(report.problems)
