"""Builders of valid wire objects for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.digest import sha256_hex
from shared.models import (
    FileEntry,
    Generator,
    Manifest,
    NodeEntry,
    NodeFiles,
    VersionIndex,
    new_version_id,
)
from shared.store import BundleStore, IndexRef, KeyedBundleStore

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
GEN = Generator(name="tests", version="0")


def make_index(
    files: dict[str, dict[str, bytes]],
    created: datetime = T0,
    parent: str | None = None,
) -> VersionIndex:
    """An index for ``{node: {file name: bytes}}`` (the bytes are not stored)."""
    nodes = {
        node: NodeEntry(
            files={n: FileEntry(sha256=sha256_hex(d), size=len(d)) for n, d in f.items()}
        )
        for node, f in files.items()
    }
    return VersionIndex(
        version=new_version_id(created, sha256_hex(repr(sorted(files.items())).encode())),
        created=created,
        parent=parent,
        nodes=nodes,
    )


def store_version(
    store: BundleStore,
    files: dict[str, dict[str, bytes]],
    created: datetime = T0,
    parent: str | None = None,
) -> tuple[VersionIndex, IndexRef]:
    """Upload the objects and index of one version (the manifest is not moved)."""
    for node_files in files.values():
        for data in node_files.values():
            store.put_object(data)
    index = make_index(files, created, parent)
    return index, store.put_index(index)


def manifest_for(index: VersionIndex, ref: IndexRef, **extra: object) -> Manifest:
    """A manifest pointing at a stored index."""
    return Manifest(
        version=index.version,
        index_key=ref.key,
        index_sha256=ref.sha256,
        created=index.created,
        generator=GEN,
        **extra,  # type: ignore[arg-type]
    )


def later(minutes: int) -> datetime:
    """T0 plus some minutes."""
    return T0 + timedelta(minutes=minutes)


def assert_current_intact(store: KeyedBundleStore) -> str | None:
    """The bundle invariant: the manifest (if any) points to an index whose sha256 matches and
    whose every object exists with its sha256. Returns the current version."""
    read = store.read_manifest()
    if read is None:
        return None
    m = read.manifest
    index = store.get_index(m.version, m.index_sha256)  # verifies the index's sha256
    for digest in sorted(index.digests()):
        store.get_object(digest)  # verifies the object's sha256
    assert store.missing_objects(index) == []
    return m.version


def files_by_node(index: VersionIndex) -> dict[str, NodeFiles]:
    """Every node of ``index`` with all its files (its sets' and its own)."""
    return {node: index.resolve(entry) for node, entry in index.nodes.items()}
