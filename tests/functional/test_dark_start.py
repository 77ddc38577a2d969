"""Issue 12.4: a fetcher that starts while Envoy rejects the current version does not stay dark
silently: it confirms the first release, reports the rejection, and falls back to the newest
older version in the manifest's parent chain that Envoy accepts. Memory store, fake proxy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from envoy_fetcher.poll import Fetcher
from envoy_fetcher.settings import FetcherSettings
from shared.memory_store import MemoryBundleStore
from tests.bundles import later, manifest_for, store_version
from tests.envoy_files import cds, lds
from tests.fakes import FakeProxy

NODE = "fish.service.local/gateway"


def publish(store: MemoryBundleStore, minute: int, backend: str, parent: str | None) -> str:
    files = {NODE: {"lds.yaml": lds({"/": backend}), "cds.yaml": cds({backend: 9000})}}
    index, ref = store_version(store, files, later(minute), parent=parent)
    read = store.read_manifest()
    store.swap_manifest(manifest_for(index, ref), read.etag if read else None)
    return index.version


def fresh_fetcher(store: MemoryBundleStore, tmp_path: Path, proxy: FakeProxy) -> Fetcher:
    settings = FetcherSettings(node=NODE, bucket="b", config_dir=tmp_path / "cfg")
    return Fetcher.from_dir(settings, store, proxy)


def test_a_rejected_current_version_at_start_falls_back_to_its_parent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Envoy boots on v3 and rejects it (a listener that cannot bind), rejects v2 too, accepts
    v1: the fetcher serves v1, marks v3 bad, and says so in last_error and a log line."""
    store = MemoryBundleStore()
    v1 = publish(store, 1, "blue", None)
    v2 = publish(store, 2, "green", v1)
    v3 = publish(store, 3, "red", v2)
    proxy = FakeProxy(verdicts=["rejected", "rejected", "accepted"])
    fetcher = fresh_fetcher(store, tmp_path, proxy)
    with caplog.at_level(logging.WARNING):
        step = fetcher.poll_once()
    assert (step.result, step.version) == ("rejected", v3)
    assert proxy.starts == 1 and proxy.swaps == 3  # booted on v3, then v2, then v1
    assert fetcher.serving() == v1
    assert fetcher.state.applied_version == v1 and {v3, v2} <= fetcher.state.bad_versions.keys()
    assert (
        fetcher.state.last_error and f"serving the older version {v1}" in fetcher.state.last_error
    )
    assert any(r.getMessage().startswith("release.fallback") for r in caplog.records)
    assert fetcher.poll_once().result == "not_modified"  # the rejected version is not retried

    v4 = publish(store, 4, "blue2", v3)  # a fixed version moves on from the fallback
    step = fetcher.poll_once()
    assert (step.result, step.version, fetcher.serving()) == ("applied", v4, v4)
    assert fetcher.state.last_error is None


def test_with_no_accepted_older_version_the_rejection_is_reported_not_silent(
    tmp_path: Path,
) -> None:
    """The only version is rejected at boot: nothing to fall back to, and last_error says so
    (before: serving nothing with last_error null)."""
    store = MemoryBundleStore()
    v1 = publish(store, 1, "blue", None)
    fetcher = fresh_fetcher(store, tmp_path, FakeProxy(verdicts=["rejected"]))
    step = fetcher.poll_once()
    assert (step.result, step.version) == ("rejected", v1)
    assert fetcher.state.last_error and "serving nothing" in fetcher.state.last_error
    assert v1 in fetcher.state.bad_versions


def test_the_first_release_is_confirmed_by_booting_envoy_on_it(tmp_path: Path) -> None:
    """A fresh fetcher starts Envoy on its first release and reports Envoy's verdict."""
    store = MemoryBundleStore()
    v1 = publish(store, 1, "blue", None)
    proxy = FakeProxy()
    fetcher = fresh_fetcher(store, tmp_path, proxy)
    assert fetcher.poll_once().result == "applied"
    assert proxy.starts == 1 and fetcher.serving() == v1
