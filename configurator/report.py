"""What one cycle did: read by the CLI summary, the metrics and the ``cycle.done`` log line."""

from __future__ import annotations

import time
from collections.abc import Callable
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
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds, in cycle order
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
            **{f"{stage}_seconds": seconds for stage, seconds in self.stages.items()},
            **({"repaired": True} if self.repaired else {}),
        }


class Laps:
    """Seconds spent in each stage of a cycle: ``mark(stage)`` ends the stage running since the
    previous mark (or since the laps were made)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._since = clock()

    def mark(self, stage: str) -> None:
        now = self.clock()
        self.seconds[stage] = round(now - self._since, 3)
        self._since = now
