"""Poll and apply: one conditional manifest read and, when it changed, one apply attempt.

A new version flows one way: (with ``NJ_VERIFY_KEY``) its signature -> its index ->
``download`` (verified files, task values filled) -> ``release`` (stage, swap ``current``) ->
the ``Proxy`` (confirm the swap, or swap back). A version whose signature does not verify is
marked bad and never read; the release being served stays. This is what
``nightjar-fetcher once`` runs; ``runner`` adds the timing and Envoy supervision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from envoy_fetcher.cache import ObjectCache
from envoy_fetcher.download import Download, digests_of, download_release, node_files
from envoy_fetcher.envoy import REJECTED_REASON, Proxy, Verdict
from envoy_fetcher.errors import BundleRejectedError, ListenerPortError
from envoy_fetcher.inotify import count_subscriptions, over_limit
from envoy_fetcher.lineage import check_signed, older_versions
from envoy_fetcher.metrics import FetcherMetrics
from envoy_fetcher.release import ReleaseDir
from envoy_fetcher.settings import FetcherSettings
from envoy_fetcher.state import (
    FetcherState,
    PollResult,
    ReleaseResult,
    load_state,
    save_state,
    touch_heartbeat,
)
from shared.errors import NightjarError, SignatureError, VerificationUnavailableError
from shared.logs import EventLogger, get_logger
from shared.models import NodeFiles, VersionIndex
from shared.signing import Verifier
from shared.store import BundleStore, ManifestRead

log = get_logger(__name__)

StepResult = Literal["applied", "unchanged", "not_modified", "missing", "rejected", "error"]
REJECTED = REJECTED_REASON


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        release: ReleaseDir,
        cache: ObjectCache,
        state: FetcherState,
        proxy: Proxy | None = None,
        clock: Callable[[], datetime] = _utcnow,
        metrics: FetcherMetrics | None = None,
        verifier: Verifier | None = None,
        inotify_limit: int | None = None,
    ) -> None:
        self.settings = settings
        self.inotify_limit = inotify_limit  # fs.inotify.max_user_instances (None: unknown)
        self.store = store
        self.release = release
        self.cache = cache
        self.state = state
        self.proxy = proxy
        self.clock = clock
        self.metrics = metrics or FetcherMetrics()
        self.verifier = verifier
        self.etag: str | None = None
        self.log = log.bind(node=settings.node)
        self._swapped_at = 0.0  # time.monotonic() of the last swap of ``current``

    @classmethod
    def from_dir(
        cls,
        settings: FetcherSettings,
        store: BundleStore,
        proxy: Proxy | None = None,
        clock: Callable[[], datetime] = _utcnow,
        metrics: FetcherMetrics | None = None,
        verifier: Verifier | None = None,
        inotify_limit: int | None = None,
    ) -> Fetcher:
        """A fetcher on ``settings.config_dir``: creates its directories, loads its state."""
        release = ReleaseDir(settings.config_dir)
        cache = ObjectCache(settings.config_dir / "objects")
        release.ensure()
        cache.ensure()
        state = load_state(release.state_path)
        state.node, state.supervised = settings.node, proxy is not None
        return cls(
            settings, store, release, cache, state, proxy, clock, metrics, verifier, inotify_limit
        )

    # -- state ------------------------------------------------------------------------------
    def serving(self) -> str | None:
        """The release ``current`` points to (what a proxy started now would serve)."""
        return self.release.current()

    def note_error(self, message: str) -> None:
        self.state.last_error, self.state.last_error_at = message, self.clock()
        self._save()

    def _save(self) -> None:
        save_state(self.release.state_path, self.state)

    def note_rejected(self, version: str, reason: str) -> None:
        """The proxy refused ``version`` when it started on it: mark it bad, never retry it."""
        self.state.bad_versions[version] = reason
        self._note_release("rejected", version)
        self.note_error(f"{version}: {reason}")

    def _note_release(self, result: ReleaseResult, version: str) -> None:
        self.state.last_release, self.state.last_release_version = result, version
        self.metrics.release(result)

    def _note_poll(self, result: PollResult) -> None:
        self.metrics.polled(result)
        if result != "error":
            touch_heartbeat(self.release.heartbeat_path)
        if self.state.last_poll != result:  # steady state writes nothing
            self.state.last_poll, self.state.last_poll_at = result, self.clock()
            self._save()

    def _record(self, version: str, release: str) -> None:
        self.state.applied_version, self.state.release = version, release
        self.state.applied_at = self.clock()
        self.state.last_error = None
        self._save()

    # -- one step ---------------------------------------------------------------------------
    def poll_once(self) -> Step:
        """One conditional manifest read and, when it changed, one apply attempt."""
        try:
            poll = self.store.poll_manifest(self.etag)
        except NightjarError as err:
            self.log.warning("poll.failed", error=str(err))
            self._note_poll("error")
            self.note_error(f"poll: {err}")
            return Step("error", detail=str(err))
        if poll.status == "not_modified":
            self._note_poll("not_modified")
            return Step("not_modified", self.state.applied_version)
        if poll.status == "missing" or poll.read is None:
            self._note_poll("missing")
            self.log.info("poll.no_manifest", detail="nothing published yet; waiting")
            return Step("missing")
        self._note_poll("changed")
        if self.state.manifest_version != poll.read.manifest.version:
            self.state.manifest_version = poll.read.manifest.version
            self._save()
        step = self._apply(poll.read)
        if step.result in ("applied", "unchanged"):
            self.metrics.serving(poll.read.manifest.version, poll.read.manifest.created)
        if step.result in ("applied", "unchanged", "rejected"):
            self.etag = poll.read.etag  # a rejected version is not retried
        return step

    def _apply(self, read: ManifestRead) -> Step:
        version = read.manifest.version
        if version in self.state.bad_versions:
            return Step("rejected", version, self.state.bad_versions[version])
        if version == self.state.applied_version and self.release.current():
            return Step("unchanged", version)
        vlog = self.log.bind(version=version)
        try:
            m = read.manifest
            check_signed(self.store, self.verifier, m.version, m.index_sha256)
            return self._apply_version(read, vlog)
        except SignatureError as err:
            return self._refuse_unsigned(version, err, vlog)
        except BundleRejectedError as err:
            vlog.error("release.rejected", key=err.key, error=str(err))
            self._note_release("rejected", version)
            self.note_error(f"{version}: {err}")
            return Step("error", version, str(err))
        except (NightjarError, OSError) as err:
            vlog.error("release.failed", error=str(err))
            self._note_release("failed", version)
            self.note_error(f"{version}: {err}")
            return Step("error", version, str(err))

    def _refuse_unsigned(self, version: str, err: SignatureError, vlog: EventLogger) -> Step:
        """A version that does not verify is never read; one that could not be checked
        (``VerificationUnavailableError``) is retried at the next poll."""
        vlog.error("release.unverified", error=str(err))
        self.note_error(f"{version}: {err}")
        if isinstance(err, VerificationUnavailableError):
            return Step("error", version, str(err))
        self.state.bad_versions[version] = str(err)
        self._save()
        return Step("rejected", version, str(err))

    def _apply_version(self, read: ManifestRead, vlog: EventLogger) -> Step:
        started = time.monotonic()
        manifest = read.manifest
        s = self.settings
        index = self.store.get_index(manifest.version, manifest.index_sha256)
        files = node_files(index, s.node, s.max_object_bytes)
        current = self.release.current()
        applied = self.release.digests(current)
        if current and applied == digests_of(files):
            self._record(manifest.version, current)
            return Step("unchanged", manifest.version, "node files identical")
        try:
            download = self._stage(manifest.version, files)
        except ListenerPortError as err:
            return self._refuse_ports(index, files, current is None, err, vlog)
        self._warn_inotify(download, vlog)
        verdict = self._swap_and_confirm(download.version, current, vlog)
        if verdict == "rejected":
            if current is None:  # a dark start: nothing older on disk to go back to
                return self._fall_back(index, download.digests, vlog)
            return Step("rejected", manifest.version, self.state.bad_versions[manifest.version])
        self.state.confirm = verdict
        self._note_release("applied", manifest.version)
        self._record(manifest.version, manifest.version)
        self._prune()
        vlog.info(
            "release.applied",
            changed_files=_changed(applied, download),
            downloaded=download.downloaded,
            confirm=verdict,
            seconds=round(time.monotonic() - started, 3),
            confirm_seconds=round(time.monotonic() - self._swapped_at, 3),
            seconds_since_created=round((self.clock() - manifest.created).total_seconds(), 3),
        )
        return Step("applied", manifest.version)

    def _stage(self, version: str, files: NodeFiles) -> Download:
        s = self.settings
        download = download_release(
            self.store, self.cache, version, files, s.max_object_bytes, s.task_values()
        )
        self.release.stage(download.version, download.files, download.digests)
        self.metrics.downloaded(download.downloaded_bytes)
        return download

    def _warn_inotify(self, download: Download, vlog: EventLogger) -> None:
        """Say so before the swap when Envoy cannot hold this version's file subscriptions."""
        needed = count_subscriptions(download.files)
        problem = over_limit(needed, self.inotify_limit)
        if problem:
            vlog.warning(
                "envoy.inotify_limit", needed=needed, limit=self.inotify_limit, detail=problem
            )

    def _swap_and_confirm(self, version: str, previous: str | None, vlog: EventLogger) -> Verdict:
        if self.proxy is None:
            self._swap(version)
            return "unconfirmed"
        # A proxy never started boots on this release, and its verdict at boot counts.
        verdict = self.proxy.confirm_swap(
            lambda: self._swap(version), self.settings.confirm_seconds
        )
        if verdict != "rejected":
            return verdict
        reason = self.proxy.rejection_reason() or REJECTED
        if previous:
            self.release.swap(previous)
        self.state.bad_versions[version] = reason
        self._note_release("rolled_back" if previous else "rejected", version)
        self.note_error(f"{version}: {reason}; rolled back to {previous}")
        vlog.error("release.rolled_back", restored=previous, reason=reason)
        return "rejected"

    def _swap(self, version: str) -> None:
        self.release.swap(version)
        self._swapped_at = time.monotonic()

    def _refuse_ports(
        self,
        index: VersionIndex,
        files: NodeFiles,
        dark: bool,
        err: ListenerPortError,
        vlog: EventLogger,
    ) -> Step:
        """A version whose listeners need this task's listener or admin port is rejected for
        good (it is never retried); on a dark start an older version is served instead."""
        reason = str(err)
        vlog.error("release.rejected", error=reason, at="listener ports")
        self.state.bad_versions[index.version] = reason
        self._note_release("rejected", index.version)
        self.note_error(f"{index.version}: {reason}")
        if dark:
            return self._fall_back(index, digests_of(files), vlog, reason)
        return Step("rejected", index.version, reason)

    def _fall_back(
        self,
        rejected: VersionIndex,
        digests: dict[str, str],
        vlog: EventLogger,
        reason: str = REJECTED,
    ) -> Step:
        """Envoy refused the current version at boot: serve the newest older version in its
        parent chain that Envoy accepts, and say so (the current one stays marked bad)."""
        s = self.settings
        for older in older_versions(self.store, self.verifier, rejected.parent):
            try:
                files = node_files(older, s.node, s.max_object_bytes)
                if digests_of(files) == digests:
                    continue  # the same files for this node: Envoy would refuse them again
                download = self._stage(older.version, files)
            except (NightjarError, OSError) as err:
                vlog.warning("release.fallback_skipped", candidate=older.version, error=str(err))
                continue
            if self._swap_and_confirm(download.version, None, vlog) != "rejected":
                return self._fell_back(rejected.version, older.version, vlog, reason)
        detail = f"{reason}; no older version in its parent chain is accepted: serving nothing"
        vlog.error("release.dark", reason=detail)
        self.note_error(f"{rejected.version}: {detail}")
        return Step("rejected", rejected.version, detail)

    def _fell_back(self, rejected: str, older: str, vlog: EventLogger, reason: str) -> Step:
        detail = f"{reason}; serving the older version {older} instead"
        self.state.applied_version, self.state.release = older, older
        self.state.applied_at = self.clock()
        self.note_error(f"{rejected}: {detail}")
        vlog.warning("release.fallback", serving=older, rejected=rejected)
        self._prune()
        return Step("rejected", rejected, detail)

    def _prune(self) -> None:
        protect = {v for v in (self.release.current(), self.state.release) if v}
        self.release.prune(self.settings.keep_releases, protect)
        self.cache.prune(self.release.referenced())


def _changed(applied: dict[str, str], download: Download) -> list[str]:
    """The files whose content differs from the release that was current."""
    return sorted(n for n, digest in download.digests.items() if applied.get(n) != digest)
