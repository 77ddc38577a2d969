"""One configurator cycle: scan -> conventions -> nodes -> render -> validate -> publish -> GC.

``Configurator`` runs the stages in that order and keeps what carries over between cycles: the
render cache (``render.RenderCache``), the validator's verdicts, the problems seen last time
(only new ones are logged), when the current version's objects were last checked, and the
metrics.

Traffic shifts (docs/progressive-delivery.md): ``shifter.Shifter`` is the build's stage
between conventions and nodes: it reads the alarms of every active shift in one request
(``alarms.AlarmSource``) and rewrites the route weights; the shifts' states are published with
the version, read back from the current version next cycle, and a shift that moved publishes
on its own. A frozen manifest stops the cycle before any of this, so it freezes shifts too.

Self-repair: every cycle reads and verifies the current index; at most once per
``check_every`` (and whenever the current version is one it has not checked) it also lists the
objects (one LIST request per 1000 objects) to find any the current version references that are
missing or resized. A damaged current version is repaired by publishing a fresh version that
uploads every object again (docs/configurator.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from configurator.alarms import AlarmSource, StaticAlarms
from configurator.build import NodeValidator, build_mesh
from configurator.discovery import DiscoverySource
from configurator.errors import ConfiguratorError
from configurator.metrics import Metrics, record_cycle
from configurator.publish import Content, Current, publish_version
from configurator.render import RenderCache, TemplateLibrary
from configurator.report import CycleReport, Laps, ShiftChange
from configurator.shifter import Shifter, shift_problems
from shared.errors import (
    DigestMismatchError,
    InvalidBundleError,
    ManifestConflictError,
    NightjarError,
    ObjectMissingError,
)
from shared.logs import get_logger
from shared.models import MAX_OBJECT_BYTES, Generator, NodeEntry, NodeFiles, Problem
from shared.signing import Signer
from shared.store import BundleStore, ManifestRead

log = get_logger(__name__)


@dataclass(frozen=True)
class Retention:
    """How many versions to keep and how long every version is kept at least."""

    keep: int = 20
    grace: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Safety:
    """How the configurator guards what it publishes: the largest file fetchers accept, how
    often the current version's objects are checked (0: every cycle), and the signing key."""

    max_object_bytes: int = MAX_OBJECT_BYTES
    check_every: timedelta = timedelta(minutes=5)
    signer: Signer | None = None


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
        safety: Safety | None = None,
        clock: Callable[[], datetime] = _utcnow,
        alarms: AlarmSource | None = None,
    ) -> None:
        self.namespaces = namespaces
        self.store = store
        self.discovery = discovery
        self.templates = templates
        self.validator = validator
        self.retention = retention or Retention()
        self.metrics = metrics or Metrics()
        self.safety = safety or Safety()
        self.clock = clock
        self.alarms: AlarmSource = alarms if alarms is not None else StaticAlarms()
        self.generator = Generator.here("nightjar-configurator")
        self.renders = RenderCache()
        self._last_problems: set[Problem] = set()
        self._checked: tuple[str, datetime] | None = None  # version, when its objects were listed

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
        laps = Laps()
        read = self.store.read_manifest()
        if read is not None and read.manifest.frozen:
            m = read.manifest
            log.warning("cycle.frozen", version=m.version, by=m.frozen_by, reason=m.frozen_reason)
            return CycleReport("frozen", version=m.version, frozen_by=m.frozen_by)
        current = self._current(read) if read is not None else None
        laps.mark("read")
        scan = self.discovery.scan(self.namespaces)
        laps.mark("scan")
        previous = current.index if current else None
        recorded_shifts = current.index.shifts if current and current.index else {}
        shifter = Shifter(recorded_shifts, self.clock(), self.alarms)
        built = build_mesh(
            scan.namespaces,
            self.templates,
            self.validator,
            self.renders,
            previous,
            self.safety.max_object_bytes,
            stage=shifter,
        )
        content = Content(built.nodes, built.file_sets, built.blobs)
        shifts = shifter.states(built.failed_namespaces)
        recorded = current.index.summary.problems if current and current.index else []
        noted = shift_problems(built.problems) != shift_problems(recorded)
        if current is not None and current.damage:
            content = _without_lost_files(content, built.problems, self.store, current)
        laps.mark("build")
        outcome = publish_version(
            self.store,
            content,
            built.summary(),
            current,
            now=self.clock(),
            generator=self.generator,
            signer=self.safety.signer,
            shifts=shifts,
            force=noted,
        )
        laps.mark("publish")
        if outcome.status == "published":
            self._checked = (str(outcome.version), self.clock())  # every object just written
            if outcome.repaired and current is not None:
                damaged = current.read.manifest.version
                log.warning("current.repaired", version=outcome.version, damaged=damaged)
            self._collect_garbage()
            laps.mark("gc")
        return CycleReport(
            outcome.status,
            outcome.version,
            outcome.changed_nodes,
            built.problems,
            uploaded=outcome.uploaded,
            failed_nodes=built.failed_nodes,
            repaired=outcome.repaired,
            stages=laps.seconds,
            shifts=list(shifts.values()),
            shift_changes=shifter.changes(shifts) if outcome.status == "published" else [],
        )

    def _current(self, read: ManifestRead) -> Current:
        """The current version as read, with what is wrong with it (if anything)."""
        m = read.manifest
        try:
            index = self.store.get_index(m.version, m.index_sha256)
        except (DigestMismatchError, InvalidBundleError, ObjectMissingError) as err:
            log.error("current.damaged", version=m.version, error=str(err))
            return Current(read, None, f"index unreadable: {err}")
        if not self._check_due(m.version):
            return Current(read, index)
        missing = self.store.missing_objects(index)
        self._checked = (m.version, self.clock())
        if not missing:
            return Current(read, index)
        log.error("current.damaged", version=m.version, missing_objects=len(missing))
        return Current(read, index, f"{len(missing)} object(s) missing or resized")

    def _check_due(self, version: str) -> bool:
        if self._checked is None or self._checked[0] != version:
            return True
        return self.clock() - self._checked[1] >= self.safety.check_every

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
        for change in report.shift_changes:
            _log_shift(change)
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


def _log_shift(change: ShiftChange) -> None:
    """One line per step change (``shift.step``) or abort (``shift.aborted``)."""
    s = change.state
    fields = {
        "namespace": s.namespace,
        "service": s.service,
        "from_color": s.from_color,
        "to_color": s.to_color,
        "verdict": s.verdict,
        "step": s.step + 1,
        "steps": len(s.steps),
        "percent": s.percent,
    }
    if change.kind == "aborted":
        log.warning("shift.aborted", **fields, reason=s.abort_reason, cause=s.abort_cause)
    else:
        next_at = s.next_step_at.isoformat() if s.next_step_at else None
        log.info("shift.step", **fields, next_step_at=next_at)


def _without_lost_files(
    content: Content, problems: list[Problem], store: BundleStore, current: Current
) -> Content:
    """Drop kept nodes (builds that failed) whose previous files are lost from the store: a
    repair cannot upload bytes it does not have, and must not publish a node it cannot serve."""
    if current.index is None:
        return content
    held = content.blobs.keys()
    without_bytes = {
        node
        for node, entry in content.nodes.items()
        if any(e.sha256 not in held for e in _entry_files(content, entry).values())
    }
    if not without_bytes:
        return content
    lost = set(store.missing_objects(current.index))
    nodes = {}
    for node, entry in content.nodes.items():
        if node in without_bytes and any(
            e.sha256 in lost for e in _entry_files(content, entry).values()
        ):
            problems.append(
                Problem(
                    where=node,
                    item="previous files",
                    reason="lost from the store and the node failed to build; not published",
                )
            )
            continue
        nodes[node] = entry
    return Content(nodes, content.file_sets, content.blobs)


def _entry_files(content: Content, entry: NodeEntry) -> NodeFiles:
    files = {n: e for s in entry.sets for n, e in content.file_sets[s].items()}
    return {**files, **entry.files}
