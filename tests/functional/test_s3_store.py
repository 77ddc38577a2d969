"""The bundle store protocol on S3 (in-process moto): every operation and failure mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.digest import sha256_hex
from shared.errors import (
    DigestMismatchError,
    InvalidBundleError,
    ManifestConflictError,
    ObjectMissingError,
    StoreError,
    VersionExistsError,
)
from shared.models import VersionIndex
from shared.s3_store import S3BundleStore
from shared.store import DELETE_BATCH, IndexRef
from tests.bundles import later, make_index, manifest_for, store_version
from tests.conftest import BUCKET
from tests.faults import RequestCounter, tamper

NODE = "fish.service.local/tuna/blue"
GATEWAY = "fish.service.local/gateway"


def test_put_object_writes_without_asking(s3_store: S3BundleStore) -> None:
    """put_object never HEADs: each write refreshes LastModified, which shields it from GC."""
    counter = RequestCounter(s3_store.client)
    first = s3_store.put_object(b"listener: 1")
    second = s3_store.put_object(b"listener: 1")
    assert first.sha256 == second.sha256 == sha256_hex(b"listener: 1")
    assert (counter.calls["PutObject"], counter.calls["HeadObject"]) == (2, 0)
    assert s3_store.get_object(first.sha256) == b"listener: 1"


def test_keys_live_under_the_prefix(s3_store: S3BundleStore) -> None:
    """Every key the store writes is under its configured prefix."""
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}})
    s3_store.swap_manifest(manifest_for(index, ref), None)
    keys = [o["Key"] for o in s3_store.client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys and all(k.startswith("mesh/prod/") for k in keys)
    assert "mesh/prod/manifest.json" in keys
    assert f"mesh/prod/versions/{index.version}.json" in keys
    assert f"mesh/prod/objects/{sha256_hex(b'a')}" in keys


def test_tampered_object_is_refused(s3_store: S3BundleStore) -> None:
    """Bytes that no longer hash to their key raise DigestMismatchError naming the key."""
    digest = s3_store.put_object(b"good").sha256
    tamper(s3_store.client, BUCKET, f"mesh/prod/objects/{digest}")
    with pytest.raises(DigestMismatchError, match=digest):
        s3_store.get_object(digest)


def test_missing_object_raises_object_missing(s3_store: S3BundleStore) -> None:
    """Reading an object that was never stored names the missing key."""
    with pytest.raises(ObjectMissingError) as info:
        s3_store.get_object("0" * 64)
    assert info.value.key == f"mesh/prod/objects/{'0' * 64}"
    assert info.value.operation == "GetObject"


def test_index_round_trip_and_immutability(s3_store: S3BundleStore) -> None:
    """An index reads back equal; a second put of the same version is refused, nothing changes."""
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"a", "cds.yaml": b"b"}})
    assert s3_store.get_index(index.version, ref.sha256) == index
    other = make_index({NODE: {"lds.yaml": b"other"}}).model_copy(update={"version": index.version})
    with pytest.raises(VersionExistsError):
        s3_store.put_index(other)
    assert s3_store.get_index(index.version, ref.sha256) == index


def test_tampered_index_is_refused(s3_store: S3BundleStore) -> None:
    """An index whose bytes changed after publishing fails its sha256 check."""
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}})
    body = json.loads(
        s3_store.client.get_object(Bucket=BUCKET, Key=f"mesh/prod/{ref.key}")["Body"].read()
    )
    body["parent"] = None
    body["nodes"][NODE]["files"]["lds.yaml"]["size"] = 999
    tamper(s3_store.client, BUCKET, f"mesh/prod/{ref.key}", json.dumps(body).encode())
    with pytest.raises(DigestMismatchError):
        s3_store.get_index(index.version, ref.sha256)


@pytest.mark.parametrize(
    ("node", "file_name"),
    [
        (NODE, "../../etc/passwd"),
        (NODE, ".."),
        (NODE, "sub/lds.yaml"),
        (NODE, ".hidden"),
        ("../escape/x", "lds.yaml"),
        ("fish.service.local/tuna", "lds.yaml"),
        ("/abs/path/x", "lds.yaml"),
    ],
)
def test_hostile_names_in_an_index_are_refused(
    s3_store: S3BundleStore, node: str, file_name: str
) -> None:
    """An index naming a path outside a release directory, or a bad node id, never parses."""
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}})
    body = json.loads(index.model_dump_json())
    body["nodes"] = {node: {"files": {file_name: {"sha256": sha256_hex(b"a"), "size": 1}}}}
    data = json.dumps(body).encode()
    s3_store.client.put_object(Bucket=BUCKET, Key=f"mesh/prod/{ref.key}", Body=data)
    with pytest.raises(InvalidBundleError, match="not allowed"):
        s3_store.get_index(index.version, sha256_hex(data))


def test_conditional_manifest_read_answers_304(s3_store: S3BundleStore) -> None:
    """A poll with the current ETag is one GetObject answered 'not modified'."""
    assert s3_store.poll_manifest(None).status == "missing"
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}})
    etag = s3_store.swap_manifest(manifest_for(index, ref), None)
    counter = RequestCounter(s3_store.client)
    first = s3_store.poll_manifest(None)
    assert first.status == "changed" and first.read is not None
    assert first.read.etag == etag and first.read.manifest.version == index.version
    counter.reset()
    assert s3_store.poll_manifest(etag).status == "not_modified"
    assert dict(counter.calls) == {"GetObject": 1}
    assert counter.params[0][1]["IfNoneMatch"] == etag


def test_two_writers_racing_for_the_manifest(s3_store: S3BundleStore) -> None:
    """Both read the same ETag; exactly one swap wins, the other changes nothing."""
    base_index, base_ref = store_version(s3_store, {NODE: {"lds.yaml": b"base"}})
    etag = s3_store.swap_manifest(manifest_for(base_index, base_ref), None)
    a_index, a_ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}}, later(1))
    b_index, b_ref = store_version(s3_store, {NODE: {"lds.yaml": b"b"}}, later(2))

    s3_store.swap_manifest(manifest_for(a_index, a_ref), etag)
    with pytest.raises(ManifestConflictError):
        s3_store.swap_manifest(manifest_for(b_index, b_ref), etag)

    current = s3_store.read_manifest()
    assert current is not None and current.manifest.version == a_index.version
    assert s3_store.get_index(current.manifest.version, current.manifest.index_sha256) == a_index


def test_two_first_writers_racing(s3_store: S3BundleStore) -> None:
    """Creating the manifest is If-None-Match '*': the second creator loses."""
    a_index, a_ref = store_version(s3_store, {NODE: {"lds.yaml": b"a"}})
    b_index, b_ref = store_version(s3_store, {NODE: {"lds.yaml": b"b"}}, later(1))
    s3_store.swap_manifest(manifest_for(a_index, a_ref), None)
    with pytest.raises(ManifestConflictError):
        s3_store.swap_manifest(manifest_for(b_index, b_ref), None)
    current = s3_store.read_manifest()
    assert current is not None and current.manifest.version == a_index.version


def test_list_versions_oldest_first_ignoring_foreign_keys(s3_store: S3BundleStore) -> None:
    """Versions sort by creation time; unrelated keys under versions/ are ignored."""
    newer, _ = store_version(s3_store, {NODE: {"lds.yaml": b"2"}}, later(5))
    older, _ = store_version(s3_store, {NODE: {"lds.yaml": b"1"}}, later(1))
    s3_store.client.put_object(Bucket=BUCKET, Key="mesh/prod/versions/README.txt", Body=b"x")
    assert s3_store.list_versions() == [older.version, newer.version]


def test_gc_keeps_newest_and_current_and_deletes_in_batches(s3_store: S3BundleStore) -> None:
    """GC keeps the newest N plus the manifest's version, and deletes >1000 orphans in batches."""
    versions: list[tuple[VersionIndex, IndexRef]] = []
    for i in range(5):
        parent = versions[-1][0].version if versions else None
        files = {NODE: {"lds.yaml": f"v{i}".encode()}}
        versions.append(store_version(s3_store, files, later(i), parent))
    rolled_back_to = versions[0]
    s3_store.mark_was_current(versions[4][0].version)  # what a rollback away from v4 records
    s3_store.swap_manifest(manifest_for(*rolled_back_to), None)
    orphans = [sha256_hex(f"orphan {i}".encode()) for i in range(1100)]
    for i, digest in enumerate(orphans):  # uploads no index references (one request each)
        key = f"mesh/prod/objects/{digest}"
        s3_store.client.put_object(Bucket=BUCKET, Key=key, Body=f"orphan {i}".encode())

    counter = RequestCounter(s3_store.client)
    now = datetime.now(UTC) + timedelta(days=30)
    report = s3_store.collect_garbage(keep=2, grace=timedelta(hours=1), now=now)

    kept = {versions[0][0].version, versions[3][0].version, versions[4][0].version}
    assert set(report.kept_versions) == kept
    assert set(s3_store.list_versions()) == kept
    assert set(report.deleted_versions) == {versions[1][0].version, versions[2][0].version}
    assert set(orphans) <= set(report.deleted_objects)
    assert len(report.deleted_objects) == 1100 + 2  # the orphans + v1's and v2's files
    batch_sizes = [len(p["Delete"]["Objects"]) for op, p in counter.params if op == "DeleteObjects"]
    assert max(batch_sizes) <= DELETE_BATCH and sum(batch_sizes) == 1102 + 2
    for index, _ in (versions[0], versions[3], versions[4]):
        for entry in index.files_of(NODE).values():
            assert s3_store.get_object(entry.sha256)
    with pytest.raises(ObjectMissingError):
        s3_store.get_object(orphans[0])


def test_gc_grace_period_protects_young_versions_and_objects(s3_store: S3BundleStore) -> None:
    """Versions younger than the grace period survive keep=1; young orphans are not deleted."""
    now = datetime.now(UTC)
    recent = [
        store_version(s3_store, {NODE: {"lds.yaml": f"r{i}".encode()}}, now - timedelta(minutes=i))
        for i in range(1, 4)
    ]
    old, _ = store_version(s3_store, {NODE: {"lds.yaml": b"old"}}, now - timedelta(days=2))
    young_orphan = s3_store.put_object(b"in-flight upload").sha256

    report = s3_store.collect_garbage(keep=1, grace=timedelta(hours=1), now=now)

    assert report.deleted_versions == [old.version]
    assert set(s3_store.list_versions()) == {v.version for v, _ in recent}
    assert young_orphan not in report.deleted_objects
    assert s3_store.get_object(young_orphan) == b"in-flight upload"


def test_gc_dry_run_deletes_nothing(s3_store: S3BundleStore) -> None:
    """A dry run reports what it would delete and leaves every key in place."""
    parent = None
    for i in range(3):
        index, _ = store_version(
            s3_store, {GATEWAY: {"lds.yaml": f"{i}".encode()}}, later(i), parent
        )
        parent = index.version
    s3_store.mark_was_current(parent)
    before = s3_store.client.list_objects_v2(Bucket=BUCKET)["KeyCount"]
    report = s3_store.collect_garbage(
        keep=1, grace=timedelta(0), now=datetime.now(UTC) + timedelta(days=1), dry_run=True
    )
    assert report.dry_run and len(report.deleted_versions) == 2
    assert s3_store.client.list_objects_v2(Bucket=BUCKET)["KeyCount"] == before


def test_s3_errors_name_operation_bucket_and_key(s3_client: object) -> None:
    """A missing bucket surfaces as StoreError with operation, bucket, key and code."""
    store = S3BundleStore(s3_client, "no-such-bucket", prefix="p")  # type: ignore[arg-type]
    with pytest.raises(StoreError) as info:
        store.put_object(b"x")
    err = info.value
    # Real S3 answers the HEAD with a bare 404 and fails the PUT; moto fails the HEAD.
    assert err.operation in {"HeadObject", "PutObject"}
    assert (err.bucket, err.code) == ("no-such-bucket", "NoSuchBucket")
    assert err.key.startswith("p/objects/")
    with pytest.raises(StoreError) as listing:
        store.list_versions()
    assert listing.value.code == "NoSuchBucket" and "no-such-bucket" in str(listing.value)
