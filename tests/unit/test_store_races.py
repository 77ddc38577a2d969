"""Issue 12.2/12.3 at the store: lost answers resolve to the truth, losers and GC leave no litter.

Pure logic over ``MemoryBundleStore`` (the same ``KeyedBundleStore`` code S3 runs).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import ManifestConflictError, StoreError
from shared.memory_store import MemoryBundleStore
from shared.store import MANIFEST_KEY, ever_current
from tests.bundles import T0, later, manifest_for, store_version
from tests.faults import LostAnswerStore

NODE = "fish.service.local/gateway"


@pytest.mark.parametrize("as_retry", [False, True])
def test_a_manifest_swap_whose_answer_was_lost_reports_success(as_retry: bool) -> None:
    """The write landed: reading the manifest back shows our bytes, so the swap succeeded."""
    store = LostAnswerStore(lose=(MANIFEST_KEY,), as_retry=as_retry)
    v1 = store_version(store, {NODE: {"lds.yaml": b"1"}})
    etag = store.swap_manifest(manifest_for(*v1), None)
    read = store.read_manifest()
    assert read is not None and (read.manifest.version, read.etag) == (v1[0].version, etag)


def test_a_lost_answer_for_a_write_that_did_not_land_is_still_an_error() -> None:
    """When the manifest holds someone else's bytes, the caller hears a conflict, not success."""
    store = LostAnswerStore(lose=(MANIFEST_KEY,), as_retry=True)
    v1 = store_version(store, {NODE: {"lds.yaml": b"1"}})
    v2 = store_version(store, {NODE: {"lds.yaml": b"2"}}, later(1))
    MemoryBundleStore.swap_manifest(store, manifest_for(*v1), None)  # another writer, answered
    with pytest.raises(ManifestConflictError):
        store.swap_manifest(manifest_for(*v2), '"stale"')


def test_a_dropped_connection_on_another_key_is_not_hidden() -> None:
    """Only the manifest swap reads back; other failed writes raise as they happened."""
    store = LostAnswerStore(lose=("objects/",))
    with pytest.raises(StoreError, match="connection dropped"):
        store.put_object(b"x")


def test_a_retried_index_put_that_finds_its_own_bytes_succeeds() -> None:
    """put_index after a lost answer: identical bytes are stored, so it is not VersionExists."""
    store = LostAnswerStore(lose=("versions/",), as_retry=True)
    index, _ = store_version(MemoryBundleStore(), {NODE: {"lds.yaml": b"1"}})
    ref = store.put_index(index)
    assert store.get_index(index.version, ref.sha256) == index


def test_gc_treats_never_current_versions_as_garbage_first() -> None:
    """Losers' indexes do not count toward keep; what was current (chain, markers) is kept."""
    store = MemoryBundleStore(clock=lambda: T0)
    a = store_version(store, {NODE: {"lds.yaml": b"a"}}, later(0))
    store.swap_manifest(manifest_for(*a), None)
    losers = [
        store_version(store, {NODE: {"lds.yaml": f"lost{i}".encode()}}, later(1 + i), a[0].version)
        for i in range(5)
    ]
    b = store_version(store, {NODE: {"lds.yaml": b"b"}}, later(10), a[0].version)
    read = store.read_manifest()
    assert read is not None
    store.swap_manifest(manifest_for(*b), read.etag)
    report = store.collect_garbage(keep=2, grace=timedelta(minutes=1), now=later(120))
    assert set(report.kept_versions) == {a[0].version, b[0].version}
    assert set(report.deleted_versions) == {index.version for index, _ in losers}
    assert store.versions_ever_current() == {a[0].version, b[0].version}


def test_a_version_rolled_away_from_stays_history() -> None:
    """An abandoned version has no child; the marker a rollback leaves keeps it as history."""
    a, _ = store_version(MemoryBundleStore(), {NODE: {"lds.yaml": b"a"}})
    b, _ = store_version(MemoryBundleStore(), {NODE: {"lds.yaml": b"b"}}, later(1), a.version)
    assert ever_current([a, b], a.version) == {a.version}
    assert ever_current([a, b], a.version, [b.version]) == {a.version, b.version}


def test_missing_objects_finds_deleted_and_resized_objects() -> None:
    """One listing tells which objects of a version are gone or have another size."""
    store = MemoryBundleStore()
    index, _ = store_version(store, {NODE: {"lds.yaml": b"lds", "cds.yaml": b"cds"}})
    assert store.missing_objects(index) == []
    lds, cds = (index.files_of(NODE)[n].sha256 for n in ("lds.yaml", "cds.yaml"))
    del store.blobs[f"objects/{lds}"]
    data, etag, when = store.blobs[f"objects/{cds}"]
    store.blobs[f"objects/{cds}"] = (data + b"!", etag, when)
    assert store.missing_objects(index) == sorted([lds, cds])


def test_gc_deletes_markers_and_signatures_with_their_versions() -> None:
    """A deleted version leaves no history marker or signature behind; kept ones keep theirs."""
    from shared.signing import VersionSignature

    store = MemoryBundleStore(clock=lambda: T0)
    old = store_version(store, {NODE: {"lds.yaml": b"old"}}, later(0))
    new = store_version(store, {NODE: {"lds.yaml": b"new"}}, later(1), old[0].version)
    for index, ref in (old, new):
        store.put_signature(
            VersionSignature(
                version=index.version, index_sha256=ref.sha256, key_id="k", signature="AA=="
            )
        )
    store.mark_was_current(old[0].version)
    store.swap_manifest(manifest_for(*new), None)
    store.collect_garbage(keep=1, grace=timedelta(0), now=later(60))
    assert sorted(k for k in store.blobs if not k.startswith("objects/")) == sorted(
        ["manifest.json", f"versions/{new[0].version}.json", f"signatures/{new[0].version}.json"]
    )
