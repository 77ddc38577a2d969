"""Download: a node's files of one version, verified, fetching only what the cache lacks.

``node_files`` picks (and checks) the node's entries of an index; ``download_release`` turns them
into a ``Download``: the bytes to stage, with per-task values filled in, and the digests they
came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy_fetcher.cache import ObjectCache
from envoy_fetcher.envoy import port_conflicts
from envoy_fetcher.errors import BundleRejectedError, ListenerPortError
from shared.errors import StoreError
from shared.models import LDS_FILE, REQUIRED_FILES, NodeFiles, VersionIndex
from shared.placeholders import ADMIN_PORT, LISTENER_PORT, fill_placeholders
from shared.store import BundleStore


@dataclass(frozen=True)
class Download:
    """One node's files of one version, ready to stage."""

    version: str
    files: dict[str, bytes]
    digests: dict[str, str]
    downloaded: int
    downloaded_bytes: int = 0


def node_files(index: VersionIndex, node: str, max_bytes: int) -> NodeFiles:
    """The node's file entries in ``index``; BundleRejectedError when it cannot be applied."""
    files = index.files_of(node)
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


def digests_of(files: NodeFiles) -> dict[str, str]:
    """File name -> published sha256."""
    return {name: entry.sha256 for name, entry in files.items()}


def download_release(
    store: BundleStore,
    cache: ObjectCache,
    version: str,
    files: NodeFiles,
    max_bytes: int,
    values: Mapping[str, str | int],
) -> Download:
    """The node's verified files with per-task values filled in; ListenerPortError when its
    listeners need this task's listener or admin port."""
    raw, fetched = fetch_files(store, cache, version, files, max_bytes)
    refuse_port_conflicts(raw, values, version)
    filled = fill_task_values(raw, values, version)
    nbytes = sum(len(raw[name]) for name in fetched)
    return Download(version, filled, digests_of(files), len(fetched), nbytes)


def fetch_files(
    store: BundleStore, cache: ObjectCache, version: str, files: NodeFiles, max_bytes: int
) -> tuple[dict[str, bytes], list[str]]:
    """Verified published bytes per file name, and the names that had to be downloaded."""
    out: dict[str, bytes] = {}
    downloaded: list[str] = []
    for name, entry in sorted(files.items()):
        data = cache.get(entry.sha256)
        if data is None:
            data = _download(store, version, name, entry.sha256, entry.size, max_bytes)
            cache.put(entry.sha256, data)
            downloaded.append(name)
        out[name] = data
    return out, downloaded


def _download(
    store: BundleStore, version: str, name: str, sha256: str, size: int, max_bytes: int
) -> bytes:
    try:
        data = store.get_object(sha256)
    except StoreError as err:
        raise BundleRejectedError(str(err), version=version, key=err.key) from err
    if len(data) != size or len(data) > max_bytes:
        raise BundleRejectedError(
            f"{name}: {len(data)} bytes, index says {size} (limit {max_bytes})",
            version=version,
            key=f"objects/{sha256}",
        )
    return data


def fill_task_values(
    files: dict[str, bytes], values: Mapping[str, str | int], version: str
) -> dict[str, bytes]:
    """Fill per-task placeholders; a file that is not UTF-8 text is refused."""
    filled = {}
    for name, data in files.items():
        try:
            filled[name] = fill_placeholders(data, values)
        except UnicodeDecodeError as err:
            raise BundleRejectedError(f"{name} is not UTF-8 text", version=version) from err
    return filled


def refuse_port_conflicts(
    files: dict[str, bytes], values: Mapping[str, str | int], version: str
) -> None:
    """ListenerPortError naming the first listener whose port this task already uses."""
    try:
        lds = files.get(LDS_FILE, b"").decode()
    except UnicodeDecodeError:
        return  # fill_task_values refuses it
    conflicts = port_conflicts(lds, int(values[LISTENER_PORT]), int(values[ADMIN_PORT]))
    if conflicts:
        raise ListenerPortError(conflicts[0], version=version)
