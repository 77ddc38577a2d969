"""Issue 12 at the configurator: contained failures, size limits, GC races, self-repair, races.

All on the in-memory store (parse-level validation); the same flows as processes against moto's
HTTP server are in tests/integration/test_safety_processes.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from configurator.cycle import Configurator, Retention, Safety
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.settings import ConfiguratorSettings
from configurator.validate import EnvoyValidator
from envoy_fetcher.settings import FetcherSettings
from nightjar_cli import operations as ops
from shared.errors import ManifestConflictError
from shared.memory_store import MemoryBundleStore
from shared.models import MAX_OBJECT_BYTES, Manifest, NodeFiles
from shared.store import OBJECTS_DIR, index_key_for
from tests.bundles import T0, assert_current_intact, files_by_node
from tests.faults import ExplodingValidator, PausingBeforeIndex


class Clock:
    """A settable UTC clock shared by a store and its configurators."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def namespace(name: str, routes: dict[str, str], service: str = "tuna") -> RawNamespace:
    settings = RawInstance("service-settings", {"SERVICE": service, "COLOR": "blue", **routes})
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    return RawNamespace(
        f"id-{name}", name, (RawService(f"s-{name}", "tuna-blue", (settings, task)),)
    )


def configurator(
    store: MemoryBundleStore,
    tmp_path: Path,
    *namespaces: RawNamespace,
    clock: Clock | None = None,
    safety: Safety | None = None,
    validator: object = None,
    keep: int = 20,
) -> Configurator:
    return Configurator(
        namespaces=[ns.name for ns in namespaces],
        store=store,
        discovery=StaticDiscovery(list(namespaces)),
        templates=TemplateLibrary.from_dir(tmp_path),
        validator=validator or EnvoyValidator(None),  # type: ignore[arg-type]
        retention=Retention(keep=keep),
        safety=safety,
        **({"clock": clock} if clock else {}),  # type: ignore[arg-type]
    )


def nodes_of(store: MemoryBundleStore, version: str | None) -> dict[str, NodeFiles]:
    return files_by_node(store.get_index(version or ""))


# -- 12.1: one namespace or node never fails the cycle ---------------------------------------


def test_a_trailing_newline_service_is_a_problem_and_other_namespaces_publish(
    tmp_path: Path,
) -> None:
    """SERVICE="tuna\\n" in one namespace: a problem there, no failed cycle, the other publishes."""
    store = MemoryBundleStore()
    bad = namespace("fish", {"/t": "1"}, service="tuna\n")
    report = configurator(store, tmp_path, bad, namespace("bird", {"/b": "1"})).run_cycle()
    assert report.outcome == "published"
    assert set(nodes_of(store, report.version)) == {
        "fish/gateway",
        "bird/gateway",
        "bird/tuna/blue",
    }
    (problem,) = [p for p in report.problems if p.item == "attribute 'SERVICE'"]
    assert problem.where == "fish/tuna-blue" and "'tuna\\n'" in problem.reason


def test_an_exception_building_one_namespace_keeps_its_nodes_and_publishes_the_rest(
    tmp_path: Path,
) -> None:
    """An unexpected error inside one namespace (a non-string attribute) is that namespace's
    problem: its previous nodes are kept, the other namespace's change is published."""
    store = MemoryBundleStore()
    first = configurator(
        store, tmp_path, namespace("fish", {"/t": "1"}), namespace("bird", {"/b": "1"})
    ).run_cycle()
    broken = namespace("fish", {"/t": None})  # type: ignore[dict-item]
    report = configurator(store, tmp_path, broken, namespace("bird", {"/b2": "1"})).run_cycle()
    assert report.outcome == "published", report.error
    before, after = nodes_of(store, first.version), nodes_of(store, report.version)
    assert {n: after[n] for n in after if n.startswith("fish/")} == {
        n: before[n] for n in before if n.startswith("fish/")
    }
    assert after["bird/gateway"] != before["bird/gateway"]
    (problem,) = [p for p in report.problems if p.where == "fish"]
    assert "AttributeError" in problem.reason and "keep their previous files" in problem.reason
    assert sorted(report.failed_nodes) == ["fish/gateway", "fish/tuna/blue"]


def test_an_exception_building_one_node_keeps_its_previous_files(tmp_path: Path) -> None:
    """A validator crash on one node's files: that node keeps its files, the cycle publishes."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path, namespace("fish", {"/t": "1"})).run_cycle()
    (tmp_path / "fish" / "gateway").mkdir(parents=True)
    (tmp_path / "fish" / "gateway" / "extra.json").write_text('{"boom": 1}')
    validator = ExplodingValidator(EnvoyValidator(None), b"boom")
    report = configurator(
        store, tmp_path, namespace("fish", {"/t2": "1"}), validator=validator
    ).run_cycle()
    assert report.outcome == "published" and report.failed_nodes == ["fish/gateway"]
    before, after = nodes_of(store, first.version), nodes_of(store, report.version)
    assert after["fish/gateway"] == before["fish/gateway"]
    assert after["fish/tuna/blue"] != before["fish/tuna/blue"]
    (problem,) = [p for p in report.problems if p.where == "fish/gateway"]
    assert "RuntimeError('validator crashed')" in problem.reason


# -- 12.5: sizes agree -----------------------------------------------------------------------


def test_the_configurator_and_the_fetcher_share_one_size_limit() -> None:
    """NJ_MAX_OBJECT_BYTES defaults to the same 4 MiB for both processes."""
    fetcher = FetcherSettings(node="fish/gateway", bucket="b")
    assert ConfiguratorSettings().max_object_bytes == fetcher.max_object_bytes == MAX_OBJECT_BYTES
    assert MAX_OBJECT_BYTES == 4 * 1024 * 1024


def test_a_rendered_file_over_the_limit_is_refused_and_previous_files_are_kept(
    tmp_path: Path,
) -> None:
    """A render larger than the fetchers accept never reaches the store: a problem per node."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path, namespace("fish", {"/t": "1"})).run_cycle()
    sizes = [e.size for files in nodes_of(store, first.version).values() for e in files.values()]
    lds = max(sizes)
    routes = {f"/{'x' * 400}{n}": "1" for n in range(10)}
    small = Safety(max_object_bytes=lds + 100)
    report = configurator(store, tmp_path, namespace("fish", routes), safety=small).run_cycle()
    assert report.outcome == "unchanged"  # every node kept its previous files
    assert sorted(report.failed_nodes) == ["fish/gateway", "fish/tuna/blue"]
    refused = [p.reason for p in report.problems if p.item == "rendered files"]
    assert len(refused) == 2
    for reason in refused:
        assert "lds.yaml is" in reason and "over the fetchers' limit" in reason
        assert "NJ_MAX_OBJECT_BYTES" in reason and "previous files kept" in reason
    read = store.read_manifest()
    assert read is not None and read.manifest.version == first.version


# -- 12.2: GC cannot break the current version; damage is repaired ------------------------------


def test_gc_while_a_publisher_is_paused_before_its_index_leaves_the_current_version_whole(
    tmp_path: Path,
) -> None:
    """The replay: v1 and v3 share files no retained version references; v3's publisher pauses
    after its object writes while GC (as `nightjar gc` runs it) deletes v1. v3 is complete."""
    clock = Clock()
    store = MemoryBundleStore(clock=clock)
    v1 = configurator(store, tmp_path, namespace("fish", {"/a": "1"}), clock=clock).run_cycle()
    clock.advance(hours=2)
    v2 = configurator(store, tmp_path, namespace("fish", {"/b": "1"}), clock=clock).run_cycle()
    only_v1 = (
        store.get_index(v1.version or "").digests() - store.get_index(v2.version or "").digests()
    )
    clock.advance(hours=2)
    gc_reports = []

    def gc_now() -> None:
        gc_reports.append(store.collect_garbage(keep=1, grace=timedelta(hours=1), now=clock()))

    cfg = configurator(store, tmp_path, namespace("fish", {"/a": "1"}), clock=clock, keep=1)
    pause = PausingBeforeIndex(store, gc_now)
    v3 = cfg.run_cycle()
    assert v3.outcome == "published" and pause.paused == 1
    assert v1.version in gc_reports[0].deleted_versions  # GC really ran and pruned v1
    assert only_v1 and only_v1 <= store.get_index(v3.version or "").digests()
    assert assert_current_intact(store) == v3.version


def _object_keys(store: MemoryBundleStore, version: str | None) -> list[str]:
    return [OBJECTS_DIR + d for d in sorted(store.get_index(version or "").digests())]


@pytest.mark.parametrize("damage", ["deleted", "resized"])
def test_a_current_version_with_a_lost_object_is_repaired_by_the_next_cycle(
    tmp_path: Path, damage: str
) -> None:
    """An object of the current version deleted or rewritten (another size): the next cycle
    publishes a fresh version that uploads every object again, and says so."""
    store = MemoryBundleStore()
    mesh = namespace("fish", {"/t": "1"})
    first = configurator(store, tmp_path, mesh).run_cycle()
    key = _object_keys(store, first.version)[0]
    if damage == "deleted":
        del store.blobs[key]
    else:
        store.blobs[key] = (b"tampered", '"x"', T0)
    cfg = configurator(store, tmp_path, mesh)
    report = cfg.run_cycle()
    assert (report.outcome, report.repaired) == ("published", True)
    assert store.get_index(report.version or "").parent == first.version
    assert nodes_of(store, report.version) == nodes_of(store, first.version)
    assert assert_current_intact(store) == report.version
    assert "nightjar_configurator_repairs_total 1" in cfg.metrics.render()
    assert cfg.run_cycle().outcome == "unchanged"


def test_a_corrupt_current_index_is_repaired_by_the_next_cycle(tmp_path: Path) -> None:
    """The current index's bytes no longer match the manifest: a fresh version replaces it."""
    store = MemoryBundleStore()
    mesh = namespace("fish", {"/t": "1"})
    first = configurator(store, tmp_path, mesh).run_cycle()
    store.blobs[index_key_for(first.version or "")] = (b"{not json", '"x"', T0)
    report = configurator(store, tmp_path, mesh).run_cycle()
    assert (report.outcome, report.repaired) == ("published", True)
    assert store.get_index(report.version or "").parent == first.version
    assert assert_current_intact(store) == report.version


def test_objects_are_listed_once_per_check_interval_not_every_cycle(tmp_path: Path) -> None:
    """Steady state lists objects at most once per NJ_CHECK_SECONDS; damage is found then."""
    clock = Clock()
    store = MemoryBundleStore(clock=clock)
    mesh = namespace("fish", {"/t": "1"})
    safety = Safety(check_every=timedelta(minutes=5))
    cfg = configurator(store, tmp_path, mesh, clock=clock, safety=safety)
    first = cfg.run_cycle()
    lists = store.requests.get("list", 0)
    del store.blobs[_object_keys(store, first.version)[0]]
    clock.advance(minutes=1)
    assert cfg.run_cycle().outcome == "unchanged"  # just published: checked, not due yet
    assert store.requests.get("list", 0) == lists
    clock.advance(minutes=5)
    report = cfg.run_cycle()
    assert (report.outcome, report.repaired) == ("published", True)


# -- 12.3: lost races leave no litter ----------------------------------------------------------


def test_three_racing_configurators_leave_only_versions_that_were_current(
    tmp_path: Path,
) -> None:
    """Three threads publish different meshes at once, many times, into one store: losers
    remove their index, so `nightjar versions` lists only versions that were once current."""
    store = MemoryBundleStore()
    start = threading.Barrier(3, timeout=30)
    lost: list[str] = []
    real_swap = store.swap_manifest

    def swap(manifest: Manifest, expected_etag: str | None) -> str:
        try:
            return real_swap(manifest, expected_etag)
        except ManifestConflictError:
            lost.append(manifest.version)
            raise

    store.swap_manifest = swap  # type: ignore[method-assign]

    def race(n: int) -> None:
        for cycle in range(8):
            cfg = configurator(store, tmp_path, namespace("fish", {f"/r{n}-{cycle}": "1"}))
            if cycle == 0:
                cfg.store = _Gate(store, start)  # type: ignore[assignment]
            cfg.run_cycle()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(lost) >= 2  # the first round alone had two losers
    rows = ops.versions(store)
    assert rows and [r.version for r in rows if not r.ever_current] == []
    assert not set(lost) & set(store.list_versions())
    assert {row.version for row in rows} <= store.versions_ever_current()
    assert assert_current_intact(store) is not None


class _Gate:
    """One configurator's view of the shared store: its first manifest swap waits until all
    three racers are about to swap (so all three built on the same manifest)."""

    def __init__(self, store: MemoryBundleStore, barrier: threading.Barrier) -> None:
        self._store = store
        self._barrier = barrier
        self._waited = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def swap_manifest(self, manifest: Manifest, expected_etag: str | None) -> str:
        if not self._waited:
            self._waited = True
            self._barrier.wait()
        return self._store.swap_manifest(manifest, expected_etag)
