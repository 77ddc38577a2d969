"""Progressive delivery: a ``SHIFT`` declaration, its schedule, and the split it gives a route.

Everything here is pure: ``advance`` turns (declaration, recorded progress, now, what the cycle
observed) into the progress to record and serve; ``pair_weights`` turns a percentage and a
route's total weight into the two colors' integer weights. No clock, no AWS, no store: the
cycle's shift stage (``configurator.shifter``) feeds them, and docs/progressive-delivery.md
describes the rules they implement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

MAX_STEPS = 20
MAX_ALARMS = 10
MAX_EVERY_SECONDS = 7 * 24 * 3600
# Envoy refuses a weighted_clusters route whose weights add up to more than a uint32.
MAX_ROUTE_WEIGHT_SUM = 2**32 - 1

Verdict = Literal["pending", "shifting", "completed", "aborted"]
AbortCause = Literal["alarm", "unhealthy", "operator"]
ABORT_CAUSES: tuple[AbortCause, ...] = ("alarm", "unhealthy", "operator")


def format_every(seconds: int) -> str:
    """A step interval in the largest unit that divides it: ``5m``, ``90s``, ``2h``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_time(moment: datetime) -> str:
    """An RFC 3339 UTC timestamp as the ``start=``/``abort=`` options write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ShiftDecl:
    """A validated ``SHIFT`` value on the color being rolled out (docs/cloud-map.md)."""

    from_color: str
    steps: tuple[int, ...]  # strictly increasing percentages, the last one 100
    every_seconds: int
    alarms: tuple[str, ...] = ()
    start: datetime | None = None  # None: the first cycle that sees the declaration
    abort: datetime | None = None  # set by ``nightjar shift abort``

    @property
    def identity(self) -> str:
        """The declaration as canonical text without ``abort=``: the shift it names. A
        different identity is a new shift; the same one continues (or stays aborted)."""
        parts = [
            f"from={self.from_color}",
            f"steps={','.join(str(s) for s in self.steps)}",
            f"every={format_every(self.every_seconds)}",
        ]
        if self.alarms:
            parts.append(f"alarms={','.join(self.alarms)}")
        if self.start is not None:
            parts.append(f"start={format_time(self.start)}")
        return " ".join(parts)

    @property
    def text(self) -> str:
        """The declaration as ``nightjar shift`` writes it into Cloud Map."""
        return self.identity + (f" abort={format_time(self.abort)}" if self.abort else "")

    def step_at(self, start: datetime, step: int) -> datetime:
        """When step ``step`` (0-based) begins for a shift that started at ``start``."""
        return start + timedelta(seconds=step * self.every_seconds)


@dataclass(frozen=True)
class Progress:
    """Where one shift stands: the part of its state the schedule decides."""

    identity: str
    start: datetime
    step: int  # index into the steps; -1 before the start (or while held without alarms)
    percent: int | None  # the new color's share; None: the declared weights apply
    next_step_at: datetime | None = None
    completed_at: datetime | None = None
    aborted_at: datetime | None = None
    abort_reason: str | None = None
    abort_cause: AbortCause | None = None

    @property
    def verdict(self) -> Verdict:
        if self.aborted_at is not None:
            return "aborted"
        if self.completed_at is not None:
            return "completed"
        return "pending" if self.percent is None else "shifting"

    @property
    def finished(self) -> bool:
        """Completed or aborted: nothing the clock or an alarm does changes it any more."""
        return self.verdict in ("completed", "aborted")


@dataclass(frozen=True)
class Signals:
    """What a cycle observed for one shift: the states of its alarms that exist (None when
    CloudWatch could not be read) and whether the new color has a healthy endpoint."""

    alarms: Mapping[str, str] | None
    healthy: bool


def advance(
    decl: ShiftDecl, recorded: Progress | None, now: datetime, signals: Signals
) -> Progress:
    """The progress of ``decl`` at ``now``, given what was recorded last time.

    The step is the clock's (one per ``every`` since the start), so a configurator that was
    down resumes where the clock says. A finished shift stays finished until the declaration
    changes; an operator abort, an alarm in ALARM or a new color without a healthy endpoint
    aborts it (the old color gets 100 %); while alarms cannot be read the shift holds.
    """
    if recorded is not None and recorded.identity == decl.identity:
        if recorded.finished:
            return recorded
        start = recorded.start
    else:
        recorded, start = None, decl.start or now
    held = _held_step(recorded)
    if decl.abort is not None:
        return _aborted(decl, start, held, now, "operator", "aborted by an operator")
    if now < start:
        return Progress(decl.identity, start, -1, None, next_step_at=start)
    due = min(int((now - start).total_seconds() // decl.every_seconds), len(decl.steps) - 1)
    firing = [a for a in decl.alarms if (signals.alarms or {}).get(a) == "ALARM"]
    if firing:
        reason = f"alarm {firing[0]!r} is in ALARM"
        return _aborted(decl, start, held if held >= 0 else due, now, "alarm", reason)
    if not signals.healthy:
        reason = "the new color has no healthy endpoint"
        return _aborted(decl, start, held if held >= 0 else due, now, "unhealthy", reason)
    if decl.alarms and signals.alarms is None:
        return recorded or Progress(decl.identity, start, -1, None)
    if due == len(decl.steps) - 1:
        return Progress(decl.identity, start, due, 100, completed_at=decl.step_at(start, due))
    return Progress(
        decl.identity, start, due, decl.steps[due], next_step_at=decl.step_at(start, due + 1)
    )


def _held_step(recorded: Progress | None) -> int:
    return recorded.step if recorded is not None else -1


def _aborted(
    decl: ShiftDecl, start: datetime, step: int, now: datetime, cause: AbortCause, reason: str
) -> Progress:
    at = decl.abort if cause == "operator" and decl.abort is not None else now
    progress = Progress(decl.identity, start, step, 0)
    return replace(progress, aborted_at=at, abort_reason=reason, abort_cause=cause)


# -- weights ---------------------------------------------------------------------------------
def exact_scale(percent: int, total: int) -> int:
    """The smallest factor ``k`` with ``percent * total * k`` a multiple of 100: scaling the
    route's weights by it makes ``percent`` % of the total an exact integer."""
    product = percent * total
    return 1 if product == 0 else 100 // math.gcd(100, product)


def pair_weights(percent: int, total: int, scale: int) -> tuple[int, int]:
    """(new color, old color) weights for ``percent`` % of ``total``, at ``scale`` times the
    declared weights; exact when ``scale`` is a multiple of ``exact_scale``, else rounded."""
    new = round(percent * total * scale / 100)
    return new, total * scale - new


def route_label(path: str, header: tuple[str, str] | None) -> str:
    """A route as an operator writes its key: ``/tuna`` or ``[header:x=1]/tuna``."""
    return f"[header:{header[0]}={header[1]}]{path}" if header else path
