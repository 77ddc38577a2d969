"""The bundle store: content-addressed objects, immutable version indexes, a manifest pointer.

``BundleStore`` is the protocol both processes program against. ``KeyedBundleStore`` holds all of
the protocol's logic (digests, immutability, conditional swap, garbage collection) on top of four
storage primitives, so the S3 and in-memory implementations cannot drift apart in behaviour.
Key layout and JSON fields: docs/bundle-format.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
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
    StoreError,
    VersionExistsError,
)
from shared.models import (
    VERSION_ID_RE,
    Manifest,
    VersionIndex,
    index_key_for,
    parse_index,
    version_created,
)
from shared.signing import VersionSignature

_M = TypeVar("_M", bound=BaseModel)

MANIFEST_KEY = "manifest.json"
OBJECTS_DIR = "objects/"
VERSIONS_DIR = "versions/"
SIGNATURES_DIR = "signatures/"  # signatures/<version>.json: opt-in signature of that version
HISTORY_DIR = "history/"  # history/<version>: that version was current and was moved away from
PARSED_INDEXES = 32  # parsed version indexes a store keeps (its retention is 20 by default)
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
    """One listed key (relative to the prefix), when it was last written, and its size."""

    key: str
    last_modified: datetime
    size: int | None = None


class BundleStore(Protocol):
    """What configurator, fetcher and CLI need from the store."""

    def put_object(self, data: bytes) -> PutResult: ...
    def get_object(self, sha256: str) -> bytes: ...
    def put_index(self, index: VersionIndex) -> IndexRef: ...
    def get_index(self, version: str, sha256: str | None = None) -> VersionIndex: ...
    def read_index_ref(self, version: str) -> tuple[VersionIndex, IndexRef]: ...
    def discard_index(self, version: str) -> None: ...
    def missing_objects(self, index: VersionIndex) -> list[str]: ...
    def put_signature(self, doc: VersionSignature) -> None: ...
    def get_signature(self, version: str) -> VersionSignature: ...
    def mark_was_current(self, version: str) -> None: ...
    def versions_ever_current(self) -> set[str]: ...
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
        raise _invalid(model, err, key) from err


def _invalid(model: type[BaseModel], err: ValidationError, key: str) -> InvalidBundleError:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    return InvalidBundleError(
        f"{key} is not a valid {model.__name__}: {where}: {first['msg']}", key=key
    )


def _index_key(version: str) -> str:
    if not VERSION_ID_RE.match(version):
        raise InvalidBundleError(f"{version!r} is not a version id")
    return index_key_for(version)


def _index_from(version: str, key: str, data: bytes) -> VersionIndex:
    """Parse an index and check it names the version its key says."""
    try:
        index = parse_index(data)
    except ValidationError as err:
        raise _invalid(VersionIndex, err, key) from err
    if index.version != version:
        raise InvalidBundleError(f"{key} names version {index.version}", key=key)
    return index


def ever_current(
    indexes: Iterable[VersionIndex], current: str | None, marked: Iterable[str] = ()
) -> set[str]:
    """Versions that were current at some time.

    The evidence: the current one; every stored index's parent (a publisher builds on what is
    current); and the history markers operators leave when they move the manifest away from a
    version (a rollback's abandoned version has no child, yet it was current).
    """
    found = {index.parent for index in indexes if index.parent is not None}
    found.update(marked)
    if current is not None:
        found.add(current)
    return found


def _batches(keys: Sequence[str], size: int = DELETE_BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class KeyedBundleStore(ABC):
    """The bundle protocol over four primitives on keys relative to ``prefix``."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.strip("/")
        self._parsed: OrderedDict[str, VersionIndex] = OrderedDict()  # by sha256 of the bytes

    def _index(self, version: str, key: str, data: bytes) -> VersionIndex:
        """``_index_from`` with the last ``PARSED_INDEXES`` results kept by the bytes' sha256:
        indexes are immutable, so garbage collection and the configurator's every-cycle read
        do not parse the same bytes again (the bytes are still read and hashed every time)."""
        digest = sha256_hex(data)
        found = self._parsed.get(digest)
        if found is not None and found.version == version:
            self._parsed.move_to_end(digest)
            return found
        index = _index_from(version, key, data)
        self._parsed[digest] = index
        while len(self._parsed) > PARSED_INDEXES:
            self._parsed.popitem(last=False)
        return index

    # -- primitives -------------------------------------------------------------------------
    @abstractmethod
    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """Bytes and ETag of ``key``; None when ``if_none_match`` matched (304)."""

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
        """Store ``data`` under its sha256. Always writes, never asks whether it is there.

        The write's fresh LastModified is what protects the object from a concurrent garbage
        collection (objects younger than the grace period are never deleted). Skipping the
        upload because a HEAD found the object would race a GC that deletes it a moment later;
        publishers skip only objects their parent version references, which GC keeps.
        """
        digest = sha256_hex(data)
        self._put(OBJECTS_DIR + digest, data)
        return PutResult(digest, uploaded=True)

    def missing_objects(self, index: VersionIndex) -> list[str]:
        """Digests of ``index`` with no object of the right size in the store (one LIST pass).

        Catches deleted objects and most alterations (a different size); a same-size alteration
        is caught where the bytes are read, since every read verifies the sha256.
        """
        sizes = {
            item.key[len(OBJECTS_DIR) :]: item.size
            for item in self._list(OBJECTS_DIR)
            if item.size is not None
        }
        return sorted(d for d, size in index.sizes().items() if sizes.get(d) != size)

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
        """Store a version index once; VersionExistsError if other bytes hold that version.

        Finding the very same bytes already stored is a success: it is this writer's own
        earlier attempt whose response was lost (a retry after a dropped connection).
        """
        key = index_key_for(index.version)
        data = index.model_dump_json(indent=1).encode()
        try:
            self._put(key, data, if_absent=True)
        except PreconditionFailedError as err:
            if self._read(key) != data:
                raise VersionExistsError(
                    f"version {index.version} already exists; indexes are immutable", key=key
                ) from err
        return IndexRef(key, sha256_hex(data))

    def discard_index(self, version: str) -> None:
        """Delete a version index that never became current (a publisher that lost its race),
        and its signature if it has one."""
        key = _index_key(version)
        self._delete([key, SIGNATURES_DIR + key.removeprefix(VERSIONS_DIR)])

    def get_index(self, version: str, sha256: str | None = None) -> VersionIndex:
        """Read a version index, verifying its sha256 when given and that it names ``version``."""
        key = _index_key(version)
        data = self._read(key) if sha256 is None else self._get_verified(key, sha256)
        return self._index(version, key, data)

    def read_index_ref(self, version: str) -> tuple[VersionIndex, IndexRef]:
        """A stored index, validated, with the sha256 a manifest pointing at it must carry."""
        key = _index_key(version)
        data = self._read(key)
        return self._index(version, key, data), IndexRef(key, sha256_hex(data))

    def list_versions(self) -> list[str]:
        """Every stored version id, oldest first."""
        found = []
        for item in self._list(VERSIONS_DIR):
            name = item.key[len(VERSIONS_DIR) :]
            if name.endswith(".json") and VERSION_ID_RE.match(name[:-5]):
                found.append(name[:-5])
        return sorted(found)

    def put_signature(self, doc: VersionSignature) -> None:
        """Store the signature of a version (before the manifest may point at it)."""
        key = SIGNATURES_DIR + _index_key(doc.version).removeprefix(VERSIONS_DIR)
        self._put(key, doc.model_dump_json(indent=1).encode())

    def get_signature(self, version: str) -> VersionSignature:
        """The stored signature of ``version``; ObjectMissingError when it was never signed."""
        key = SIGNATURES_DIR + _index_key(version).removeprefix(VERSIONS_DIR)
        return _parse(VersionSignature, self._read(key), key)

    def mark_was_current(self, version: str) -> None:
        """Record that ``version`` was current (call before moving the manifest away from it)."""
        self._put(HISTORY_DIR + _index_key(version).removeprefix(VERSIONS_DIR), b"")

    def _history_markers(self) -> set[str]:
        names = (item.key.removeprefix(HISTORY_DIR) for item in self._list(HISTORY_DIR))
        return {
            n.removesuffix(".json") for n in names if VERSION_ID_RE.match(n.removesuffix(".json"))
        }

    def versions_ever_current(self) -> set[str]:
        """Stored versions that were current at some time; the others never served anyone."""
        read = self.read_manifest()
        indexes = self._readable_indexes(self.list_versions())
        current = read.manifest.version if read is not None else None
        return ever_current(indexes.values(), current, self._history_markers()) & set(indexes)

    def _readable_indexes(self, versions: list[str]) -> dict[str, VersionIndex]:
        """Every index that parses; an unreadable one is garbage unless current or young."""
        found = {}
        for version in versions:
            try:
                found[version] = self.get_index(version)
            except (InvalidBundleError, ObjectMissingError):
                continue
        return found

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

        Returns the new ETag. A lost race raises ManifestConflictError and changes nothing. When
        the answer is lost or refused after our own write may have landed (a retried PUT finds
        its own earlier attempt), the manifest is read back: if it holds exactly our bytes, the
        swap succeeded, so the outcome reported is the truth either way.
        """
        data = manifest.model_dump_json(indent=1).encode()
        try:
            if expected_etag is None:
                return self._put(MANIFEST_KEY, data, if_absent=True)
            return self._put(MANIFEST_KEY, data, if_match=expected_etag)
        except (PreconditionFailedError, ObjectMissingError) as err:
            etag = self._stored_manifest_etag(data)
            if etag is not None:
                return etag
            raise ManifestConflictError(
                f"manifest changed since it was read (expected ETag {expected_etag}); "
                "re-read it and try again",
                key=MANIFEST_KEY,
            ) from err
        except StoreError:
            etag = self._stored_manifest_etag(data)
            if etag is not None:
                return etag
            raise

    def _stored_manifest_etag(self, data: bytes) -> str | None:
        """The manifest's ETag if it holds exactly ``data`` now, else None."""
        try:
            got = self._get(MANIFEST_KEY)
        except StoreError:
            return None
        return got[1] if got is not None and got[0] == data else None

    # -- retention --------------------------------------------------------------------------
    def collect_garbage(
        self, *, keep: int, grace: timedelta, now: datetime, dry_run: bool = False
    ) -> GcReport:
        """Delete versions outside retention and objects no retained version references.

        Retained: the current version, every version younger than ``grace`` (a publish may be in
        flight), and the newest ``keep`` versions that were ever current. A version was current
        if it is now or some stored index names it as its parent; the others lost a race (or
        their publisher died before the swap) and are garbage, not history. Objects younger than
        ``grace`` are never deleted, so an upload in flight (objects stored, index not yet) is
        safe.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        versions = self.list_versions()
        read = self.read_manifest()
        current = read.manifest.version if read is not None else None
        indexes = self._readable_indexes(versions)
        markers = self._history_markers()
        was_current = ever_current(indexes.values(), current, markers)
        history = [v for v in versions if v in was_current]
        kept = set(history[-keep:])
        kept.update(v for v in versions if now - version_created(v) < grace)
        if current is not None:
            kept.add(current)
        referenced: set[str] = set()
        for version in sorted(kept):  # an unreadable kept index aborts: nothing is deleted
            referenced |= (indexes.get(version) or self.get_index(version)).digests()
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
            doomed = [index_key_for(v) for v in report.deleted_versions]
            doomed += [HISTORY_DIR + f"{v}.json" for v in report.deleted_versions if v in markers]
            signed = {item.key for item in self._list(SIGNATURES_DIR)}
            doomed += [
                k for v in report.deleted_versions if (k := f"{SIGNATURES_DIR}{v}.json") in signed
            ]
            for batch in _batches(doomed):
                self._delete(batch)
            for batch in _batches([OBJECTS_DIR + d for d in report.deleted_objects]):
                self._delete(batch)
        return report
