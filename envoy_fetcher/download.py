"""Download: a node's files of one version, verified, fetching only what is not on disk."""

from __future__ import annotations

from envoy_fetcher.errors import BundleRejectedError
from envoy_fetcher.release import ReleaseDir
from shared.errors import StoreError
from shared.models import NodeFiles, VersionIndex
from shared.placeholders import fill_placeholders
from shared.store import BundleStore

REQUIRED_FILES = ("lds.yaml", "cds.yaml")


def node_files(index: VersionIndex, node: str, max_bytes: int) -> NodeFiles:
    """The node's file entries in ``index``; BundleRejectedError when it cannot be applied."""
    files = index.nodes.get(node)
    if files is None:
        raise BundleRejectedError(
            f"node {node!r} is not in version {index.version}; check NJ_NODE", version=index.version
        )
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleRejectedError(f"{name} missing for {node}", version=index.version)
    for name, entry in files.items():
        if entry.size > max_bytes:
            raise BundleRejectedError(
                f"{name} is {entry.size} bytes, over NJ_MAX_OBJECT_BYTES={max_bytes}",
                version=index.version,
                key=f"objects/{entry.sha256}",
            )
    return files


def fetch_files(
    store: BundleStore, release: ReleaseDir, version: str, files: NodeFiles, max_bytes: int
) -> tuple[dict[str, bytes], int]:
    """Verified published bytes per file name, and how many objects were downloaded."""
    out: dict[str, bytes] = {}
    downloaded = 0
    for name, entry in sorted(files.items()):
        data = release.cached_object(entry.sha256)
        if data is None:
            try:
                data = store.get_object(entry.sha256)
            except StoreError as err:
                raise BundleRejectedError(str(err), version=version, key=err.key) from err
            if len(data) != entry.size or len(data) > max_bytes:
                raise BundleRejectedError(
                    f"{name}: {len(data)} bytes, index says {entry.size} (limit {max_bytes})",
                    version=version,
                    key=f"objects/{entry.sha256}",
                )
            release.cache_object(entry.sha256, data)
            downloaded += 1
        out[name] = data
    return out, downloaded


def fill_task_values(
    files: dict[str, bytes], values: dict[str, str | int], version: str
) -> dict[str, bytes]:
    """Fill per-task placeholders; a file that is not UTF-8 text is refused."""
    filled = {}
    for name, data in files.items():
        try:
            filled[name] = fill_placeholders(data, values)
        except UnicodeDecodeError as err:
            raise BundleRejectedError(f"{name} is not UTF-8 text", version=version) from err
    return filled
