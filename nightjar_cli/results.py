"""What the operator commands return: typed, immutable, printed as tables or ``--json``.

Field names are the JSON keys documented in docs/cli.md; ``plain`` gives that shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Literal

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Status:
    """The current version, its age and frozen state, node and problem counts."""

    version: str
    created: str
    age_seconds: int
    frozen: bool
    frozen_by: str | None
    frozen_reason: str | None
    frozen_at: str | None
    nodes: int
    problems: int
    generator: str


@dataclass(frozen=True)
class VersionRow:
    """One retained version; ``changed_nodes`` counts nodes that differ from its parent;
    ``ever_current`` is false for a version no fetcher was ever pointed at."""

    version: str
    created: str
    parent: str | None
    nodes: int
    changed_nodes: int | None
    current: bool
    ever_current: bool = True


@dataclass(frozen=True)
class NodeRow:
    """One node of a version: its kind, how many files, how many bytes."""

    node: str
    kind: Literal["sidecar", "gateway"]
    files: int
    bytes: int


@dataclass(frozen=True)
class FileChange:
    """One file that differs between two versions."""

    node: str
    file: str
    change: ChangeKind


def plain(data: Any) -> Any:
    """Results (or lists of them) as plain JSON values; anything else is returned as is."""
    if isinstance(data, list):
        return [plain(item) for item in data]
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    return data
