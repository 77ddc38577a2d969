"""The bundle store: content-addressed objects, immutable version indexes, a manifest pointer.

``BundleStore`` is the protocol both processes program against. ``KeyedBundleStore`` holds all of
the protocol's logic (digests, immutability, conditional swap, garbage collection) on top of five
storage primitives, so the S3 and in-memory implementations cannot drift apart in behaviour.
Key layout and JSON fields: docs/bundle-format.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from shared.digest import is_sha256, sha256_hex
from shared.errors import (
    DigestMismatchError,
    InvalidBundleError,
    ManifestConflictError,
    ObjectMissingError,
    PreconditionFailedError,
    VersionExistsError,
)
from shared.models import VERSION_ID_RE, Manifest, VersionIndex, index_key_for, version_created

_M = TypeVar("_M", bound=BaseModel)

MANIFEST_KEY = "manifest.json"
OBJECTS_DIR = "objects/"
VERSIONS_DIR = "versions/"
DELETE_BATCH = 1000  # S3 DeleteObjects accepts at most 1000 keys per request


@dataclass(frozen=True)
class ManifestRead:
    """A manifest as read, with the ETag a conditional swap must match."""

    manifest: Manifest
    etag: str


@dataclass(frozen=True)
class Poll:
    """Result of one conditional manifest read."""

    status: Literal["changed", "not_modified", "missing"]
    read: ManifestRead | None = None


@dataclass(frozen=True)
class PutResult:
    """Where an object lives and whether this call uploaded it."""

    sha256: str
    uploaded: bool


@dataclass(frozen=True)
class IndexRef:
    """A stored version index: its key (relative to the prefix) and the sha256 of its bytes."""

    key: str
    sha256: str


@dataclass
class GcReport:
    """What a garbage collection kept and deleted (or would delete, when ``dry_run``)."""

    dry_run: bool
    kept_versions: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)
    deleted_objects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredKey:
    """One listed key (relative to the prefix) and when it was last written."""

    key: str
    last_modified: datetime


class BundleStore(Protocol):
    """What configurator, fetcher and CLI need from the store."""

    def put_object(self, data: bytes) -> PutResult: ...
    def get_object(self, sha256: str) -> bytes: ...
    def put_index(self, index: VersionIndex) -> IndexRef: ...
    def get_index(self, version: str, sha256: str | None = None) -> VersionIndex: ...
    def read_index_ref(self, version: str) -> tuple[VersionIndex, IndexRef]: ...
    def read_manifest(self) -> ManifestRead | None: ...
    def poll_manifest(self, etag: str | None) -> Poll: ...
    def swap_manifest(self, manifest: Manifest, expected_etag: str | None) -> str: ...
    def list_versions(self) -> list[str]: ...
    def collect_garbage(
        self, *, keep: int, grace: timedelta, now: datetime, dry_run: bool = False
    ) -> GcReport: ...


def _parse(model: type[_M], data: bytes, key: str) -> _M:
    try:
        return model.model_validate_json(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise InvalidBundleError(
            f"{key} is not a valid {model.__name__}: {where}: {first['msg']}", key=key
        ) from err


def _index_key(version: str) -> str:
    if not VERSION_ID_RE.match(version):
        raise InvalidBundleError(f"{version!r} is not a version id")
    return index_key_for(version)


def _index_from(version: str, key: str, data: bytes) -> VersionIndex:
    """Parse an index and check it names the version its key says."""
    index = _parse(VersionIndex, data, key)
    if index.version != version:
        raise InvalidBundleError(f"{key} names version {index.version}", key=key)
    return index


def _batches(keys: Sequence[str], size: int = DELETE_BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class KeyedBundleStore(ABC):
    """The bundle protocol over five primitives on keys relative to ``prefix``."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.strip("/")

    # -- primitives -------------------------------------------------------------------------
    @abstractmethod
    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """Bytes and ETag of ``key``; None when ``if_none_match`` matched (304)."""

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        """Store ``data``, return its ETag; PreconditionFailedError when a condition fails."""

    @abstractmethod
    def _list(self, under: str) -> Iterator[StoredKey]: ...

    @abstractmethod
    def _delete(self, keys: Sequence[str]) -> None:
        """Delete at most ``DELETE_BATCH`` keys in one request."""

    # -- objects ----------------------------------------------------------------------------
    def put_object(self, data: bytes) -> PutResult:
        """Store ``data`` under its sha256, skipping the upload when it is already there."""
        digest = sha256_hex(data)
        key = OBJECTS_DIR + digest
        if self._exists(key):
            return PutResult(digest, uploaded=False)
        self._put(key, data)
        return PutResult(digest, uploaded=True)

    def get_object(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``, verified; DigestMismatchError otherwise."""
        if not is_sha256(sha256):
            raise InvalidBundleError(f"{sha256!r} is not a sha256", key=OBJECTS_DIR + sha256)
        key = OBJECTS_DIR + sha256
        return self._get_verified(key, sha256)

    def _read(self, key: str) -> bytes:
        got = self._get(key)
        if got is None:  # only a conditional read may answer "not modified"
            raise InvalidBundleError(f"{key}: unconditional read answered 304", key=key)
        return got[0]

    def _get_verified(self, key: str, sha256: str) -> bytes:
        data = self._read(key)
        actual = sha256_hex(data)
        if actual != sha256:
            raise DigestMismatchError(
                f"{key}: expected sha256 {sha256}, got {actual}; the stored bytes were altered",
                key=key,
            )
        return data

    # -- version indexes --------------------------------------------------------------------
    def put_index(self, index: VersionIndex) -> IndexRef:
        """Store a version index once; VersionExistsError if that version is already stored."""
        key = index_key_for(index.version)
        data = index.model_dump_json(indent=1).encode()
        try:
            self._put(key, data, if_absent=True)
        except PreconditionFailedError as err:
            raise VersionExistsError(
                f"version {index.version} already exists; indexes are immutable", key=key
            ) from err
        return IndexRef(key, sha256_hex(data))

    def get_index(self, version: str, sha256: str | None = None) -> VersionIndex:
        """Read a version index, verifying its sha256 when given and that it names ``version``."""
        key = _index_key(version)
        data = self._read(key) if sha256 is None else self._get_verified(key, sha256)
        return _index_from(version, key, data)

    def read_index_ref(self, version: str) -> tuple[VersionIndex, IndexRef]:
        """A stored index, validated, with the sha256 a manifest pointing at it must carry."""
        key = _index_key(version)
        data = self._read(key)
        return _index_from(version, key, data), IndexRef(key, sha256_hex(data))

    def list_versions(self) -> list[str]:
        """Every stored version id, oldest first."""
        found = []
        for item in self._list(VERSIONS_DIR):
            name = item.key[len(VERSIONS_DIR) :]
            if name.endswith(".json") and VERSION_ID_RE.match(name[:-5]):
                found.append(name[:-5])
        return sorted(found)

    # -- manifest ---------------------------------------------------------------------------
    def read_manifest(self) -> ManifestRead | None:
        """The current manifest and its ETag; None when no manifest was ever published."""
        poll = self.poll_manifest(None)
        return poll.read

    def poll_manifest(self, etag: str | None) -> Poll:
        """One conditional GET: ``not_modified`` when ``etag`` is still current."""
        try:
            got = self._get(MANIFEST_KEY, if_none_match=etag)
        except ObjectMissingError:
            return Poll("missing")
        if got is None:
            return Poll("not_modified")
        return Poll("changed", ManifestRead(_parse(Manifest, got[0], MANIFEST_KEY), got[1]))

    def swap_manifest(self, manifest: Manifest, expected_etag: str | None) -> str:
        """Replace the manifest only if it is still ``expected_etag`` (None: only if absent).

        Returns the new ETag. A lost race raises ManifestConflictError and changes nothing.
        """
        data = manifest.model_dump_json(indent=1).encode()
        try:
            if expected_etag is None:
                return self._put(MANIFEST_KEY, data, if_absent=True)
            return self._put(MANIFEST_KEY, data, if_match=expected_etag)
        except (PreconditionFailedError, ObjectMissingError) as err:
            raise ManifestConflictError(
                f"manifest changed since it was read (expected ETag {expected_etag}); "
                "re-read it and try again",
                key=MANIFEST_KEY,
            ) from err

    # -- retention --------------------------------------------------------------------------
    def collect_garbage(
        self, *, keep: int, grace: timedelta, now: datetime, dry_run: bool = False
    ) -> GcReport:
        """Delete versions outside retention and objects no retained version references.

        Retained: the newest ``keep`` versions, every version younger than ``grace``, and the
        version the manifest points to. Objects younger than ``grace`` are never deleted, so an
        upload in flight (objects stored, index not yet) is safe.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        versions = self.list_versions()
        read = self.read_manifest()
        kept = set(versions[-keep:])
        kept.update(v for v in versions if now - version_created(v) < grace)
        if read is not None:
            kept.add(read.manifest.version)
        referenced: set[str] = set()
        for version in sorted(kept):  # an unreadable kept index aborts: nothing is deleted
            referenced |= self.get_index(version).digests()
        report = GcReport(dry_run=dry_run, kept_versions=sorted(kept))
        report.deleted_versions = [v for v in versions if v not in kept]
        report.deleted_objects = sorted(
            item.key[len(OBJECTS_DIR) :]
            for item in self._list(OBJECTS_DIR)
            if is_sha256(item.key[len(OBJECTS_DIR) :])
            and item.key[len(OBJECTS_DIR) :] not in referenced
            and now - item.last_modified >= grace
        )
        if not dry_run:
            # Indexes first: a crash in between leaves orphan objects, never a dangling index.
            for batch in _batches([index_key_for(v) for v in report.deleted_versions]):
                self._delete(batch)
            for batch in _batches([OBJECTS_DIR + d for d in report.deleted_objects]):
                self._delete(batch)
        return report
