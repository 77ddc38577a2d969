"""Publish: store a new version only when node files changed, then swap the manifest.

Order (docs/bundle-format.md): new objects, then the immutable index, then (with a signing key)
its signature, then the conditional manifest swap. Any failure before the swap leaves the current
version in place; a lost swap removes the index it wrote (it was never current) and raises
``ManifestConflictError``, and the caller redoes its cycle.

A damaged current version (``Current.damage``: objects missing or resized, index unreadable) is
repaired by publishing a fresh version that uploads every object again, even if nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.digest import sha256_hex
from shared.errors import ManifestConflictError, SignatureError, StoreError
from shared.logs import get_logger
from shared.models import (
    DiscoverySummary,
    Generator,
    Manifest,
    NodeEntry,
    NodeFiles,
    ShiftState,
    VersionIndex,
    changed_nodes,
    new_version_id,
)
from shared.signing import Signer, sign_version
from shared.store import BundleStore, ManifestRead

log = get_logger(__name__)


@dataclass(frozen=True)
class Current:
    """What the store serves now: the manifest as read and its verified index.

    ``index`` is None when the current index cannot be read or fails its sha256; ``damage`` says
    why the current version must be repaired ("" when it is intact).
    """

    read: ManifestRead
    index: VersionIndex | None
    damage: str = ""


@dataclass(frozen=True)
class PublishOutcome:
    """What publishing did."""

    status: Literal["published", "unchanged"]
    version: str | None
    changed_nodes: list[str] = field(default_factory=list)
    uploaded: int = 0
    repaired: bool = False


@dataclass(frozen=True)
class Content:
    """What a version is to hold: node entries, the file sets they name, and the bytes built
    this cycle (files of kept nodes are the parent's and need no bytes)."""

    nodes: dict[str, NodeEntry]
    file_sets: dict[str, NodeFiles]
    blobs: dict[str, bytes]

    def digest(self) -> str:
        """A digest of every node's entry (set ids are digests of the sets' contents)."""
        flat = {
            n: [list(e.sets), {f: x.sha256 for f, x in e.files.items()}]
            for n, e in self.nodes.items()
        }
        return sha256_hex(json.dumps(flat, sort_keys=True).encode())

    def index(self, version: str, created: datetime, parent: str | None) -> VersionIndex:
        used = {s for entry in self.nodes.values() for s in entry.sets}
        return VersionIndex(
            version=version,
            created=created,
            parent=parent,
            file_sets={s: self.file_sets[s] for s in sorted(used)},
            nodes=dict(sorted(self.nodes.items())),
        )


def content_digest(nodes: dict[str, NodeEntry]) -> str:
    """A digest of every node's entry."""
    return Content(nodes, {}, {}).digest()


def _uploads(index: VersionIndex, blobs: dict[str, bytes], current: Current | None) -> list[str]:
    """The digests to upload: all but the parent's (which GC keeps); all we have when repairing.

    Kept nodes (whose build failed) carry the parent's digests, so their bytes are never needed.
    """
    wanted = index.digests()
    if current is None or current.damage or current.index is None:
        return sorted(wanted & blobs.keys())
    return sorted(wanted - current.index.digests())


def publish_version(
    store: BundleStore,
    content: Content,
    summary: DiscoverySummary,
    current: Current | None,
    *,
    now: datetime,
    generator: Generator,
    signer: Signer | None = None,
    shifts: Mapping[str, ShiftState] | None = None,
    force: bool = False,
) -> PublishOutcome:
    """Publish ``content`` (and the traffic shifts' states) unless its nodes equal the (intact)
    current version's; a shift that moved (a new step, an abort) publishes on its own, and
    ``force`` publishes anyway (the cycle's problems about shifts changed)."""
    old_nodes = current.index.nodes if current and current.index else {}
    changed = changed_nodes(old_nodes, content.nodes)
    repair = current is not None and bool(current.damage)
    shifts = dict(shifts or {})
    moved = _shifts_moved(current.index.shifts if current and current.index else {}, shifts)
    if current is not None and not (changed or moved or repair or force):
        return PublishOutcome("unchanged", current.read.manifest.version)
    parent = current.read.manifest.version if current else None
    index = content.index(new_version_id(now, content.digest()), now, parent)
    index = index.model_copy(update={"summary": summary, "shifts": dict(sorted(shifts.items()))})
    blobs = content.blobs
    uploaded = sum(store.put_object(blobs[d]).uploaded for d in _uploads(index, blobs, current))
    ref = store.put_index(index)
    manifest = Manifest(
        version=index.version,
        index_key=ref.key,
        index_sha256=ref.sha256,
        created=now,
        generator=generator,
    )
    try:
        if signer is not None:
            store.put_signature(sign_version(signer, index.version, ref.sha256))
        store.swap_manifest(manifest, current.read.etag if current else None)
    except (ManifestConflictError, SignatureError):
        _discard(store, index.version)  # never current: no fetcher or operator may see it
        raise
    return PublishOutcome("published", index.version, changed, uploaded, repaired=repair)


def _shifts_moved(old: Mapping[str, ShiftState], new: Mapping[str, ShiftState]) -> bool:
    """A shift is new or its state differs. One that disappeared (its declaration was removed)
    is no reason to publish: the next version simply does not record it."""
    return any(old.get(key) != state for key, state in new.items())


def _discard(store: BundleStore, version: str) -> None:
    try:
        store.discard_index(version)
    except StoreError as err:  # GC removes never-current indexes anyway
        log.warning("publish.discard_failed", version=version, error=str(err))
