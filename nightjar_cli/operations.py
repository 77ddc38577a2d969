"""What the ``nightjar`` operator CLI does to the bundle store, as plain functions.

Reads verify digests like the fetcher does. Writes (rollback, freeze, unfreeze) are conditional
manifest swaps: if the configurator moved the manifest in between, the operator is told to retry.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime

from nightjar_cli.errors import OperatorError
from nightjar_cli.results import ChangeKind, FileChange, NodeRow, Status, VersionRow
from shared.models import Generator, Manifest, VersionIndex, changed_nodes, node_kind
from shared.s3_store import S3BundleStore
from shared.store import BundleStore, ManifestRead


def current(store: BundleStore) -> ManifestRead:
    """The manifest, or OperatorError (naming where it looked) when there is none."""
    read = store.read_manifest()
    if read is None:
        where = store.location() if isinstance(store, S3BundleStore) else "the bundle store"
        raise OperatorError(
            f"no manifest under {where} — is NJ_PREFIX right? (or nothing was published yet: "
            "run nightjar-configurator)"
        )
    return read


def load_index(store: BundleStore, version: str | None) -> VersionIndex:
    """The index of ``version`` (default: current), verified when it is the current one."""
    read = current(store)
    if version is None or version == read.manifest.version:
        return store.get_index(read.manifest.version, read.manifest.index_sha256)
    if version not in store.list_versions():
        raise OperatorError(f"unknown version {version}; 'nightjar versions' lists retained ones")
    return store.get_index(version)


def status(store: BundleStore, now: datetime) -> Status:
    """The current version with its age, frozen state and counts."""
    m = current(store).manifest
    index = store.get_index(m.version, m.index_sha256)
    return Status(
        version=m.version,
        created=m.created.isoformat(),
        age_seconds=round((now - m.created).total_seconds()),
        frozen=m.frozen,
        frozen_by=m.frozen_by,
        frozen_reason=m.frozen_reason,
        frozen_at=m.frozen_at.isoformat() if m.frozen_at else None,
        nodes=len(index.nodes),
        problems=len(index.summary.problems),
        generator=f"{m.generator.name} {m.generator.version} on {m.generator.host}",
    )


def versions(store: BundleStore) -> list[VersionRow]:
    """Retained versions, newest first, with how many nodes changed from their parent and
    whether each was ever current (one that never was lost a publishing race or its publisher
    died before the swap: garbage for the next GC, not history to roll back to)."""
    read = current(store)
    indexes = {v: store.get_index(v) for v in store.list_versions()}
    served = store.versions_ever_current()
    rows = []
    for version in sorted(indexes, reverse=True):
        index = indexes[version]
        parent = indexes.get(index.parent) if index.parent else None
        changed = None if parent is None else len(changed_nodes(parent.nodes, index.nodes))
        rows.append(
            VersionRow(
                version=version,
                created=index.created.isoformat(),
                parent=index.parent,
                nodes=len(index.nodes),
                changed_nodes=changed if index.parent else len(index.nodes),
                current=version == read.manifest.version,
                ever_current=version in served,
            )
        )
    return rows


def nodes(index: VersionIndex) -> list[NodeRow]:
    """Every node of a version with its kind, file count and total size."""
    sizes = {
        s: (len(files), sum(e.size for e in files.values())) for s, files in index.file_sets.items()
    }
    rows = []
    for node, entry in sorted(index.nodes.items()):
        own = (len(entry.files), sum(e.size for e in entry.files.values()))
        counts = [own, *(sizes[s] for s in entry.sets)]
        rows.append(
            NodeRow(
                node=node,
                kind=node_kind(node),
                files=sum(c[0] for c in counts),
                bytes=sum(c[1] for c in counts),
            )
        )
    return rows


def node_files(store: BundleStore, index: VersionIndex, node: str) -> dict[str, bytes]:
    """Every file of ``node`` as published (verified)."""
    files = index.files_of(node)
    if files is None:
        raise OperatorError(
            f"unknown node {node!r} in version {index.version}; 'nightjar nodes' lists them"
        )
    return {name: store.get_object(entry.sha256) for name, entry in sorted(files.items())}


def diff(
    store: BundleStore, old: VersionIndex, new: VersionIndex, node: str | None = None
) -> tuple[list[FileChange], list[str]]:
    """What changed from ``old`` to ``new`` (optionally one node): changes + unified diff lines."""
    names = sorted(old.nodes.keys() | new.nodes.keys())
    if node is not None:
        if node not in names:
            raise OperatorError(f"unknown node {node!r} in {old.version} and {new.version}")
        names = [node]
    changes: list[FileChange] = []
    lines: list[str] = []
    for name in names:
        a, b = old.files_of(name) or {}, new.files_of(name) or {}
        for file in sorted(a.keys() | b.keys()):
            if a.get(file) == b.get(file):
                continue
            changes.append(FileChange(name, file, _change_kind(file in a, file in b)))
            before = store.get_object(a[file].sha256).decode(errors="replace") if file in a else ""
            after = store.get_object(b[file].sha256).decode(errors="replace") if file in b else ""
            lines += difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                f"{old.version}/{name}/{file}",
                f"{new.version}/{name}/{file}",
            )
    return changes, lines


def _change_kind(before: bool, after: bool) -> ChangeKind:
    return "added" if not before else "removed" if not after else "changed"


def point_manifest(
    store: BundleStore,
    version: str,
    *,
    frozen: bool,
    by: str | None,
    reason: str | None,
    now: datetime,
) -> Manifest:
    """Point the manifest at ``version`` with the given frozen state, conditionally."""
    read = current(store)
    if version not in store.list_versions():
        raise OperatorError(f"unknown version {version}; 'nightjar versions' lists retained ones")
    index, ref = store.read_index_ref(version)
    manifest = Manifest(
        version=version,
        index_key=ref.key,
        index_sha256=ref.sha256,
        created=index.created,
        frozen=frozen,
        frozen_by=by if frozen else None,
        frozen_reason=reason if frozen else None,
        frozen_at=now.astimezone(UTC) if frozen else None,
        generator=Generator.here("nightjar"),
    )
    if read.manifest.version != version:  # the version left behind stays history, not garbage
        store.mark_was_current(read.manifest.version)
    store.swap_manifest(manifest, read.etag)
    return manifest
