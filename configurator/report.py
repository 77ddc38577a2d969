"""What one cycle did: read by the CLI summary, the metrics and the ``cycle.done`` log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.models import Problem, ShiftState

Outcome = Literal["published", "unchanged", "frozen", "failed"]


@dataclass(frozen=True)
class ShiftChange:
    """A traffic shift that moved in a cycle: a new step (or a new shift), or an abort."""

    kind: Literal["step", "aborted"]
    state: ShiftState


@dataclass
class CycleReport:
    """What one cycle did; ``error`` is set when the outcome is ``failed``."""

    outcome: Outcome
    version: str | None = None
    changed_nodes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    uploaded: int = 0
    error: str = ""
    frozen_by: str | None = None
    failed_nodes: list[str] = field(default_factory=list)
    repaired: bool = False  # the published version replaced a damaged current one
    shifts: list[ShiftState] = field(default_factory=list)  # every shift's state after the cycle
    shift_changes: list[ShiftChange] = field(default_factory=list)

    def log_fields(self) -> dict[str, object]:
        """The fields of the ``cycle.done`` line."""
        return {
            "outcome": self.outcome,
            "version": self.version,
            "changed_nodes": len(self.changed_nodes),
            "problems": len(self.problems),
            "calls": self.calls,
            "uploaded": self.uploaded,
            "seconds": self.seconds,
            **({"repaired": True} if self.repaired else {}),
        }
