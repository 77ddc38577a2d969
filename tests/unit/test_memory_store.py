"""MemoryBundleStore keeps the store protocol: same rules as S3, no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import DigestMismatchError, ManifestConflictError, VersionExistsError
from shared.memory_store import MemoryBundleStore
from tests.bundles import T0, later, manifest_for, store_version

NODE = "ns/svc/blue"


def test_objects_are_content_addressed_and_verified() -> None:
    """Objects are keyed by sha256 and written every time; corrupted bytes fail verification."""
    store = MemoryBundleStore()
    first = store.put_object(b"abc")
    assert store.put_object(b"abc").sha256 == first.sha256
    assert (store.requests["put"], store.requests.get("head", 0)) == (2, 0)
    data, etag, when = store.blobs[f"objects/{first.sha256}"]
    store.blobs[f"objects/{first.sha256}"] = (b"abd", etag, when)
    with pytest.raises(DigestMismatchError):
        store.get_object(first.sha256)


def test_manifest_swap_is_conditional() -> None:
    """Only a writer holding the current ETag may replace the manifest."""
    store = MemoryBundleStore()
    v1 = store_version(store, {NODE: {"lds.yaml": b"1"}})
    v2 = store_version(store, {NODE: {"lds.yaml": b"2"}}, later(1))
    etag = store.swap_manifest(manifest_for(*v1), None)
    assert store.poll_manifest(etag).status == "not_modified"
    with pytest.raises(ManifestConflictError):
        store.swap_manifest(manifest_for(*v2), '"stale"')
    new_etag = store.swap_manifest(manifest_for(*v2), etag)
    poll = store.poll_manifest(etag)
    assert poll.status == "changed" and poll.read is not None
    assert (poll.read.etag, poll.read.manifest.version) == (new_etag, v2[0].version)


def test_index_is_immutable() -> None:
    """put_index refuses other bytes under an existing version id; the same bytes succeed."""
    store = MemoryBundleStore()
    index, ref = store_version(store, {NODE: {"lds.yaml": b"1"}})
    assert store.put_index(index) == ref  # a retry whose first answer was lost
    other = index.model_copy(update={"parent": index.version})
    with pytest.raises(VersionExistsError):
        store.put_index(other)


def test_gc_batches_and_clock() -> None:
    """GC uses write times from the injected clock and never sends more than 1000 keys."""
    now = [T0]
    store = MemoryBundleStore(clock=lambda: now[0])
    keep = store_version(store, {NODE: {"lds.yaml": b"keep"}})
    store.swap_manifest(manifest_for(*keep), None)
    for i in range(2500):
        store.put_object(str(i).encode())
    report = store.collect_garbage(keep=1, grace=timedelta(hours=1), now=T0 + timedelta(hours=2))
    assert len(report.deleted_objects) == 2500
    assert store.requests["delete"] == 3
    assert store.get_object(keep[0].files_of(NODE)["lds.yaml"].sha256) == b"keep"
    with pytest.raises(ValueError, match="at least 1"):
        store.collect_garbage(keep=0, grace=timedelta(0), now=T0)
