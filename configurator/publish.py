"""Publish: store a new version only when node files changed, then swap the manifest.

Order (docs/bundle-format.md): new objects, then the immutable index, then the conditional
manifest swap. Any failure before the swap leaves the current version in place; a lost swap
raises ``ManifestConflictError`` and the caller redoes its cycle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.digest import sha256_hex
from shared.models import (
    DiscoverySummary,
    Generator,
    Manifest,
    NodeFiles,
    VersionIndex,
    changed_nodes,
    new_version_id,
)
from shared.store import BundleStore, ManifestRead


@dataclass(frozen=True)
class Current:
    """What the store serves now: the manifest as read and its verified index."""

    read: ManifestRead
    index: VersionIndex


@dataclass(frozen=True)
class PublishOutcome:
    """What publishing did."""

    status: Literal["published", "unchanged"]
    version: str | None
    changed_nodes: list[str] = field(default_factory=list)
    uploaded: int = 0


def content_digest(nodes: dict[str, NodeFiles]) -> str:
    """A digest of every node's file names and digests."""
    flat = {n: {f: e.sha256 for f, e in files.items()} for n, files in nodes.items()}
    return sha256_hex(json.dumps(flat, sort_keys=True).encode())


def publish_version(
    store: BundleStore,
    nodes: dict[str, NodeFiles],
    blobs: dict[str, bytes],
    summary: DiscoverySummary,
    current: Current | None,
    *,
    now: datetime,
    generator: Generator,
) -> PublishOutcome:
    """Publish ``nodes`` unless they equal the current version's; upload only unknown objects."""
    old_nodes = current.index.nodes if current else {}
    changed = changed_nodes(old_nodes, nodes)
    if current is not None and not changed:
        return PublishOutcome("unchanged", current.index.version)
    known = current.index.digests() if current else set()
    needed = {e.sha256 for files in nodes.values() for e in files.values()} - known
    uploaded = sum(store.put_object(blobs[digest]).uploaded for digest in sorted(needed))
    index = VersionIndex(
        version=new_version_id(now, content_digest(nodes)),
        created=now,
        parent=current.index.version if current else None,
        nodes=dict(sorted(nodes.items())),
        summary=summary,
    )
    ref = store.put_index(index)
    manifest = Manifest(
        version=index.version,
        index_key=ref.key,
        index_sha256=ref.sha256,
        created=now,
        generator=generator,
    )
    store.swap_manifest(manifest, current.read.etag if current else None)
    return PublishOutcome("published", index.version, changed, uploaded)
