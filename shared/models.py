"""The wire format between configurator, fetchers and operators (schema version 1).

Everything a reader takes from the store is validated here first: node ids, file names, version
ids and digests must match their documented forms, so a hostile or corrupt index can never name a
path outside a release directory. See docs/bundle-format.md.
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared import __version__
from shared.digest import SHA256_RE

SCHEMA_VERSION: Literal[1] = 1

# Every pattern ends in \Z, not $: "$" also matches before a final newline, so "tuna\n" would
# pass re.match(...$) and break the node id, the release path or the fetcher's digest file.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"
NAME_RE = re.compile(rf"^{_NAME}\Z")
SIDECAR_NODE_RE = re.compile(rf"^({_NAME})/({_NAME})/({_NAME})\Z")
GATEWAY_NODE_RE = re.compile(rf"^({_NAME})/gateway\Z")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}\Z")
VERSION_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}\Z")
GATEWAY = "gateway"
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


class VersionIndex(_Wire):
    """Immutable index of one version: for every node, file name -> sha256 and size."""

    schema_version: Literal[1] = SCHEMA_VERSION
    version: VersionId
    created: UtcDatetime
    parent: VersionId | None = None
    nodes: dict[NodeId, NodeFiles]
    summary: DiscoverySummary = Field(default_factory=DiscoverySummary)
    shifts: dict[str, ShiftState] = Field(default_factory=dict)  # "<namespace>/<service>"

    def digests(self) -> set[str]:
        """Every object sha256 this version references."""
        return {entry.sha256 for files in self.nodes.values() for entry in files.values()}


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


def changed_nodes(old: dict[str, NodeFiles], new: dict[str, NodeFiles]) -> list[str]:
    """Node ids added, removed or with different files from ``old`` to ``new``."""
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
