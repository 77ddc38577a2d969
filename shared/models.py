"""The wire format between configurator, fetchers and operators (index schema 2, manifest 1).

Everything a reader takes from the store is validated here first: node ids, file names, version
ids and digests must match their documented forms, so a hostile or corrupt index can never name a
path outside a release directory. See docs/bundle-format.md.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import __version__
from shared.digest import SHA256_RE, sha256_hex

SCHEMA_VERSION: Literal[1] = 1  # of the manifest
INDEX_SCHEMA_VERSION: Literal[2] = 2  # of a version index; readers also accept 1

# Every pattern ends in \Z, not $: "$" also matches before a final newline, so "tuna\n" would
# pass re.match(...$) and break the node id, the release path or the fetcher's digest file.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"
NAME_RE = re.compile(rf"^{_NAME}\Z")
SIDECAR_NODE_RE = re.compile(rf"^({_NAME})/({_NAME})/({_NAME})\Z")
GATEWAY_NODE_RE = re.compile(rf"^({_NAME})/gateway\Z")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}\Z")
VERSION_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}\Z")
SET_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
GATEWAY = "gateway"
# Cloud Map conventions both the configurator and the operator CLI name (docs/cloud-map.md):
SETTINGS_INSTANCE = "service-settings"  # the instance holding a service-color's settings
SHIFT_KEY = "SHIFT"  # the service-settings key declaring a traffic shift
NAME_RULE = "[A-Za-z0-9._-], starting with a letter or digit, at most 255 characters"

# The files every node's bundle carries, named once here (the fetcher's bootstrap points Envoy
# at them; the configurator validates them).
LDS_FILE = "lds.yaml"
CDS_FILE = "cds.yaml"
REQUIRED_FILES = (LDS_FILE, CDS_FILE)

# The largest file a fetcher accepts, and so the largest the configurator publishes (both
# settings default to it: NJ_MAX_OBJECT_BYTES). docs/cloud-map.md lists the mesh limits.
MAX_OBJECT_BYTES = 4 << 20


def _check(pattern: re.Pattern[str], what: str, rule: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{what} {value!r} is not allowed: {rule}")
        return value

    return AfterValidator(validate)


def _check_node_id(value: str) -> str:
    if SIDECAR_NODE_RE.match(value) or GATEWAY_NODE_RE.match(value):
        return value
    raise ValueError(
        f"node id {value!r} is not allowed: expected <namespace>/<service>/<color> "
        f"or <namespace>/gateway, each part {NAME_RULE}"
    )


def _check_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    return value.astimezone(UTC)


NodeId = Annotated[str, AfterValidator(_check_node_id)]
FileName = Annotated[
    str,
    _check(FILE_NAME_RE, "file name", "use [A-Za-z0-9._-], no path separator, no leading dot"),
]
VersionId = Annotated[
    str, _check(VERSION_ID_RE, "version id", "expected YYYYMMDDTHHMMSSffffffZ-<8 hex>")
]
Sha256 = Annotated[str, _check(SHA256_RE, "sha256", "expected 64 lowercase hex digits")]
SetId = Annotated[str, _check(SET_ID_RE, "file set id", "expected 32 lowercase hex digits")]
UtcDatetime = Annotated[datetime, AfterValidator(_check_utc)]


class _Wire(BaseModel):
    """Base of wire models: strict types, immutable, unknown fields ignored (forward compat)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class FileEntry(_Wire):
    """One rendered file of a node: where its bytes live (sha256) and how many there are."""

    sha256: Sha256
    size: int = Field(ge=0)


class Problem(_Wire):
    """One input item the configurator rejected: where it was, what it was, why."""

    where: str
    item: str
    reason: str


class DiscoverySummary(_Wire):
    """What one configurator cycle discovered, stored with the version it produced."""

    namespaces: list[str] = Field(default_factory=list)
    service_colors: int = Field(default=0, ge=0)
    endpoints: int = Field(default=0, ge=0)
    problems: list[Problem] = Field(default_factory=list)


NodeFiles = dict[FileName, FileEntry]


def file_set_id(files: NodeFiles) -> str:
    """The id of a file set: a digest of its names, digests and sizes (equal sets, equal ids)."""
    listing = sorted((name, e.sha256, e.size) for name, e in files.items())
    return sha256_hex(json.dumps(listing).encode())[:32]


class ShiftState(_Wire):
    """One traffic shift's progress, recorded with the version that serves it and read back
    by the next cycle (docs/bundle-format.md, docs/progressive-delivery.md)."""

    namespace: str
    service: str
    to_color: str
    from_color: str
    declaration: str  # the SHIFT value, canonical, without abort=: which shift this is
    steps: list[int]
    every_seconds: int = Field(ge=1)
    alarms: list[str] = Field(default_factory=list)
    start: UtcDatetime
    step: int = Field(ge=-1)  # index into steps; -1 before the start
    percent: int | None = Field(default=None, ge=0, le=100)  # the new color's share
    next_step_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    aborted_at: UtcDatetime | None = None
    abort_reason: str | None = None
    abort_cause: Literal["alarm", "unhealthy", "operator"] | None = None
    routes: dict[str, dict[str, int]] = Field(default_factory=dict)  # route -> color -> weight

    @property
    def verdict(self) -> Literal["pending", "shifting", "completed", "aborted"]:
        """aborted / completed (final until the declaration changes), shifting, or pending."""
        if self.aborted_at is not None:
            return "aborted"
        if self.completed_at is not None:
            return "completed"
        return "pending" if self.percent is None else "shifting"


class NodeEntry(_Wire):
    """One node of a version: the file sets it carries (by id) and files of its own.

    Unknown fields are refused, not ignored: a schema 1 node (file name -> entry) must never
    read as a node without files."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    sets: tuple[SetId, ...] = ()
    files: NodeFiles = Field(default_factory=dict)


class VersionIndex(_Wire):
    """Immutable index of one version: for every node, its files (name -> sha256 and size).

    Files many nodes carry alike (a namespace's endpoint files, the sidecars' shared listeners
    and clusters) are listed once in ``file_sets`` and named by id from each node, so the index
    grows with nodes + distinct files, not nodes x files. Schema 1 indexes (every node listing
    its files) are read (``parse_index``) as nodes with files of their own only.
    """

    schema_version: Literal[2] = INDEX_SCHEMA_VERSION
    version: VersionId
    created: UtcDatetime
    parent: VersionId | None = None
    file_sets: dict[SetId, NodeFiles] = Field(default_factory=dict)
    nodes: dict[NodeId, NodeEntry]
    summary: DiscoverySummary = Field(default_factory=DiscoverySummary)
    shifts: dict[str, ShiftState] = Field(default_factory=dict)  # "<namespace>/<service>"

    @model_validator(mode="after")
    def _sets_resolve(self) -> VersionIndex:
        checked: set[tuple[str, ...]] = set()
        for node, entry in self.nodes.items():
            if entry.sets in checked and not entry.files:
                continue
            names = list(entry.files)
            for set_id in entry.sets:
                if set_id not in self.file_sets:
                    raise ValueError(f"node {node!r} names file set {set_id} the index lacks")
                names.extend(self.file_sets[set_id])
            if len(names) != len(set(names)):
                raise ValueError(f"node {node!r} carries a file name twice across its sets")
            checked.add(entry.sets)
        return self

    def files_of(self, node: str) -> NodeFiles | None:
        """Every file of ``node`` (its sets' and its own), or None when the node is absent."""
        entry = self.nodes.get(node)
        return None if entry is None else self.resolve(entry)

    def resolve(self, entry: NodeEntry) -> NodeFiles:
        """The files an entry of this index stands for."""
        files: NodeFiles = {}
        for set_id in entry.sets:
            files.update(self.file_sets[set_id])
        files.update(entry.files)
        return files

    def digests(self) -> set[str]:
        """Every object sha256 this version references."""
        found = {e.sha256 for files in self.file_sets.values() for e in files.values()}
        found.update(e.sha256 for n in self.nodes.values() for e in n.files.values())
        return found

    def sizes(self) -> dict[str, int]:
        """Every referenced object's sha256 -> its size."""
        found = {e.sha256: e.size for files in self.file_sets.values() for e in files.values()}
        found.update((e.sha256, e.size) for n in self.nodes.values() for e in n.files.values())
        return found


class _VersionIndexV1(_Wire):
    """A schema 1 index (every node lists all its files), as older configurators wrote it."""

    schema_version: Literal[1]
    version: VersionId
    created: UtcDatetime
    parent: VersionId | None = None
    nodes: dict[NodeId, NodeFiles]
    summary: DiscoverySummary = Field(default_factory=DiscoverySummary)


def parse_index(data: bytes) -> VersionIndex:
    """A version index from its stored bytes (schema 2, or 1 read as schema 2); pydantic's
    ValidationError when it is not one."""
    try:
        return VersionIndex.model_validate_json(data)
    except ValidationError as err:
        if not any(e["loc"] == ("schema_version",) for e in err.errors()):
            raise
        try:
            old = _VersionIndexV1.model_validate_json(data)
        except ValidationError:
            raise err from None
    return VersionIndex(
        version=old.version,
        created=old.created,
        parent=old.parent,
        nodes={n: NodeEntry(files=files) for n, files in old.nodes.items()},
        summary=old.summary,
    )


class Generator(_Wire):
    """Which program wrote a manifest."""

    name: str
    version: str
    host: str = ""

    @classmethod
    def here(cls, name: str) -> Generator:
        """``name`` at this release of nightjar, running on this host."""
        return cls(name=name, version=__version__, host=socket.gethostname())


class Manifest(_Wire):
    """The pointer to the current version; replaced only by a conditional write."""

    schema_version: Literal[1] = SCHEMA_VERSION
    version: VersionId
    index_key: str
    index_sha256: Sha256
    created: UtcDatetime
    frozen: bool = False
    frozen_by: str | None = None
    frozen_reason: str | None = None
    frozen_at: UtcDatetime | None = None
    generator: Generator

    @model_validator(mode="after")
    def _index_key_matches_version(self) -> Manifest:
        expected = index_key_for(self.version)
        if self.index_key != expected:
            raise ValueError(f"index_key {self.index_key!r} must be {expected!r}")
        return self


def changed_nodes(old: Mapping[str, NodeEntry], new: Mapping[str, NodeEntry]) -> list[str]:
    """Node ids added, removed or with different files from ``old`` to ``new``.

    Entries are compared as stored: set ids are content digests, so equal entries carry equal
    files (an index read from schema 1 differs from every schema 2 entry, once)."""
    return sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))


def index_key_for(version: str) -> str:
    """The key (relative to the store prefix) of a version's index."""
    return f"versions/{version}.json"


def new_version_id(created: datetime, content_digest: str) -> str:
    """A version id that sorts by creation time and differs for different content."""
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{content_digest[:8]}"


def version_created(version: str) -> datetime:
    """The creation time encoded in a version id."""
    return datetime.strptime(version.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def sidecar_node_id(namespace: str, service: str, color: str) -> str:
    """The node id of a service-color's sidecar."""
    return f"{namespace}/{service}/{color}"


def gateway_node_id(namespace: str) -> str:
    """The node id of a namespace's gateway."""
    return f"{namespace}/{GATEWAY}"


def node_kind(node_id: str) -> Literal["sidecar", "gateway"]:
    """Whether a (valid) node id names a sidecar or a gateway."""
    return "gateway" if GATEWAY_NODE_RE.match(node_id) else "sidecar"
