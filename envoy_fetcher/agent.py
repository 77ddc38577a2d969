"""The fetcher loop: poll -> download -> release (stage, swap) -> Envoy (confirm or roll back).

``Fetcher.poll_once`` is one complete step and is what ``nightjar-fetcher once`` runs; ``run``
adds the timing (interval with jitter, backoff while S3 fails), Envoy supervision and the fast
start from the last release on disk.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from envoy_fetcher.download import fetch_files, fill_task_values, node_files
from envoy_fetcher.envoy import EnvoyProcess, await_verdict
from envoy_fetcher.errors import BundleRejectedError, EnvoyError, FetcherError
from envoy_fetcher.release import ReleaseDir, write_atomic
from envoy_fetcher.settings import FetcherSettings
from envoy_fetcher.state import load_state, save_state
from shared.errors import NightjarError
from shared.logs import get_logger
from shared.models import NodeFiles
from shared.store import BundleStore, ManifestRead

log = get_logger(__name__)

StepResult = Literal["applied", "unchanged", "not_modified", "missing", "rejected", "error"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def next_delay(interval: float, jitter: float, failures: int, cap: float, rand: float) -> float:
    """Seconds to the next poll: interval +/- jitter, doubled per consecutive failure, capped."""
    base = min(cap, interval * 2**failures) if failures else interval
    return max(0.0, base * (1 + jitter * (2 * rand - 1)))


@dataclass
class Step:
    """What one poll step did."""

    result: StepResult
    version: str | None = None
    detail: str = ""


class Fetcher:
    """Keeps one node's release directory current from the bundle store."""

    def __init__(
        self,
        settings: FetcherSettings,
        store: BundleStore,
        envoy: EnvoyProcess | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.envoy = envoy
        self.clock = clock
        self.release = ReleaseDir(settings.config_dir)
        self.release.ensure()
        self.state_path = settings.config_dir / "state.json"
        self.state = load_state(self.state_path)
        self.state.node = settings.node
        self.etag: str | None = None
        self._said_waiting = False

    # -- state ------------------------------------------------------------------------------
    def _save(self) -> None:
        save_state(self.state_path, self.state)

    def _note_poll(self, result: Literal["changed", "not_modified", "missing", "error"]) -> None:
        if self.state.last_poll != result:  # steady state writes nothing
            self.state.last_poll, self.state.last_poll_at = result, self.clock()
            self._save()

    def _note_error(self, message: str) -> None:
        self.state.last_error, self.state.last_error_at = message, self.clock()
        self._save()

    # -- one step ---------------------------------------------------------------------------
    def poll_once(self) -> Step:
        """One conditional manifest read and, when it changed, one apply attempt."""
        try:
            poll = self.store.poll_manifest(self.etag)
        except NightjarError as err:
            log.warning("poll.failed", error=str(err))
            self._note_poll("error")
            self._note_error(f"poll: {err}")
            return Step("error", detail=str(err))
        if poll.status == "not_modified":
            self._note_poll("not_modified")
            return Step("not_modified", self.state.applied_version)
        if poll.status == "missing" or poll.read is None:
            self._note_poll("missing")
            log.info("poll.no_manifest", detail="nothing published yet; waiting")
            return Step("missing")
        self._note_poll("changed")
        step = self._apply(poll.read)
        if step.result in ("applied", "unchanged", "rejected"):
            self.etag = poll.read.etag  # a rejected version is not retried
        return step

    def _apply(self, read: ManifestRead) -> Step:
        version = read.manifest.version
        if version in self.state.bad_versions:
            return Step("rejected", version, self.state.bad_versions[version])
        if version == self.state.applied_version and self.release.current():
            return Step("unchanged", version)
        try:
            return self._apply_version(read)
        except BundleRejectedError as err:
            log.error("release.rejected", version=version, key=err.key, error=str(err))
            self._note_error(f"{version}: {err}")
            return Step("error", version, str(err))
        except (NightjarError, OSError) as err:
            log.error("release.failed", version=version, error=str(err))
            self._note_error(f"{version}: {err}")
            return Step("error", version, str(err))

    def _apply_version(self, read: ManifestRead) -> Step:
        started = time.monotonic()
        manifest = read.manifest
        index = self.store.get_index(manifest.version, manifest.index_sha256)
        files = node_files(index, self.settings.node, self.settings.max_object_bytes)
        current = self.release.current()
        applied = self._applied_digests(current)
        if current and applied == {n: e.sha256 for n, e in files.items()}:
            self._record(manifest.version, current)
            return Step("unchanged", manifest.version, "node files identical")
        raw, downloaded = fetch_files(
            self.store, self.release, manifest.version, files, self.settings.max_object_bytes
        )
        staged = fill_task_values(raw, self._task_values(), manifest.version)
        self.release.stage(manifest.version, staged)
        self._write_digests(manifest.version, files)
        verdict = self._swap_and_confirm(manifest.version, current)
        if verdict == "rejected":
            return Step("rejected", manifest.version, "envoy rejected the configuration")
        self._record(manifest.version, manifest.version)
        self._prune()
        changed = sorted(n for n in files if applied.get(n) != files[n].sha256)
        lag = (self.clock() - manifest.created).total_seconds()
        log.info(
            "release.applied",
            version=manifest.version,
            node=self.settings.node,
            changed_files=changed,
            downloaded=downloaded,
            confirm=verdict,
            seconds=round(time.monotonic() - started, 3),
            seconds_since_created=round(lag, 3),
        )
        return Step("applied", manifest.version)

    def _swap_and_confirm(self, version: str, previous: str | None) -> str:
        envoy = self.envoy
        if envoy is None or not envoy.running():
            self.release.swap(version)
            return "unconfirmed"
        before = envoy.admin.counters()
        self.release.swap(version)
        verdict = await_verdict(envoy.admin, before, self.settings.confirm_seconds)
        if verdict != "rejected":
            return verdict
        reason = "envoy rejected the listeners or clusters (update_rejected counter)"
        if previous:
            self.release.swap(previous)
        self.state.bad_versions[version] = reason
        self._note_error(f"{version}: {reason}; rolled back to {previous}")
        log.error("release.rolled_back", version=version, restored=previous, reason=reason)
        return "rejected"

    def _task_values(self) -> dict[str, str | int]:
        s = self.settings
        return {
            "NJ_LISTENER_PORT": s.listener_port,
            "NJ_LISTENER_ADDRESS": s.bind_address(),
            "NJ_ADMIN_PORT": s.admin_port,
            "NJ_CONFIG_DIR": str(s.config_dir),
        }

    def _digest_path(self, version: str) -> str:
        return f".{version}.digests"

    def _write_digests(self, version: str, files: NodeFiles) -> None:
        lines = "".join(f"{name} {entry.sha256}\n" for name, entry in sorted(files.items()))
        write_atomic(self.release.releases / self._digest_path(version), lines.encode())

    def _applied_digests(self, version: str | None) -> dict[str, str]:
        if version is None:
            return {}
        path = self.release.releases / self._digest_path(version)
        try:
            pairs = [line.split(" ", 1) for line in path.read_text().splitlines()]
        except OSError:
            return {}
        return {name: digest for name, digest in pairs}

    def _record(self, version: str, release: str) -> None:
        self.state.applied_version, self.state.release = version, release
        self.state.applied_at = self.clock()
        self.state.last_error = None
        self._save()

    def _prune(self) -> None:
        current = self.release.current()
        keep = {v for v in (current, self.state.release) if v}
        removed = self.release.prune(self.settings.keep_releases, keep)
        for version in removed:
            (self.release.releases / self._digest_path(version)).unlink(missing_ok=True)
        referenced = set()
        for version in self.release.versions():
            referenced |= set(self._applied_digests(version).values())
        self.release.prune_objects(referenced)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event, rand: Callable[[], float] = random.random) -> None:
        """Poll until ``stop`` is set, supervising Envoy when one is attached."""
        if self.envoy is not None and self.release.current():
            log.info("envoy.fast_start", release=self.release.current())
            self.envoy.start()
            self.envoy.wait_ready(self.settings.confirm_seconds)
        failures = 0
        while not stop.is_set():
            step = self.poll_once()
            failures = failures + 1 if step.result == "error" else 0
            self._start_envoy_when_possible()
            delay = next_delay(
                self.settings.poll_interval,
                self.settings.poll_jitter,
                failures,
                self.settings.backoff_max,
                rand(),
            )
            self._wait(stop, delay)

    def _start_envoy_when_possible(self) -> None:
        if self.envoy is None:
            return
        try:
            if self.envoy.proc is not None:
                self.envoy.supervise()
            elif self.release.current():
                self.envoy.start()
                self.envoy.wait_ready(self.settings.confirm_seconds)
            elif not self._said_waiting:
                log.info("envoy.waiting", detail="no release on disk yet; starts with the first")
                self._said_waiting = True
        except EnvoyError as err:  # retried next poll; the files stay current meanwhile
            log.error("envoy.start_failed", error=str(err))
            self._note_error(str(err))

    def _wait(self, stop: threading.Event, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, 0.5))
            if self.envoy is not None and self.envoy.proc is not None:
                self.envoy.supervise()


def check_settings(settings: FetcherSettings) -> None:
    """Refuse to start without the settings the fetcher cannot guess."""
    if not settings.node:
        raise FetcherError("no node: set NJ_NODE or pass --node (e.g. fish.service.local/gateway)")
    if not settings.bucket:
        raise FetcherError("no bucket: set NJ_BUCKET or pass --bucket")
