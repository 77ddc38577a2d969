"""``MemoryBundleStore``: the bundle store in a dict, for unit tests and offline previews.

Same semantics as ``S3BundleStore`` (it shares ``KeyedBundleStore``); ETags are the md5 of the
bytes like S3's for single-part uploads, and write times come from an injected clock. Each
primitive is atomic (one lock), as each S3 request is, so threads may share one store.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from shared.errors import ObjectMissingError, PreconditionFailedError
from shared.store import DELETE_BATCH, KeyedBundleStore, StoredKey


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryBundleStore(KeyedBundleStore):
    """Bundle store in process memory. ``requests`` counts primitive calls by name."""

    def __init__(self, prefix: str = "", clock: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(prefix)
        self.clock = clock
        self.blobs: dict[str, tuple[bytes, str, datetime]] = {}
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        self.requests[name] = self.requests.get(name, 0) + 1

    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        with self._lock:
            return self._get_locked(key, if_none_match)

    def _get_locked(self, key: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        self._count("get")
        if key not in self.blobs:
            raise ObjectMissingError(f"{key} does not exist", key=key, code="NoSuchKey")
        data, etag, _ = self.blobs[key]
        if if_none_match is not None and if_none_match == etag:
            return None
        return data, etag

    def _put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        with self._lock:
            return self._put_locked(key, data, if_match, if_absent)

    def _put_locked(self, key: str, data: bytes, if_match: str | None, if_absent: bool) -> str:
        self._count("put")
        current = self.blobs.get(key)
        if if_absent and current is not None:
            raise PreconditionFailedError("If-None-Match")
        if if_match is not None:
            if current is None:
                raise ObjectMissingError(f"{key} does not exist", key=key, code="NoSuchKey")
            if current[1] != if_match:
                raise PreconditionFailedError("If-Match")
        etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
        self.blobs[key] = (bytes(data), etag, self.clock())
        return etag

    def _list(self, under: str) -> Iterator[StoredKey]:
        with self._lock:
            self._count("list")
            found = [
                StoredKey(key, blob[2], len(blob[0]))
                for key, blob in sorted(self.blobs.items())
                if key.startswith(under)
            ]
        yield from found

    def _delete(self, keys: Sequence[str]) -> None:
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"one delete request takes at most {DELETE_BATCH} keys")
        with self._lock:
            self._count("delete")
            for key in keys:
                self.blobs.pop(key, None)
