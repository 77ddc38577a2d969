"""The fetcher's persisted state (``state.json``): what is applied and what went wrong.

Written only when something changes, so steady-state polling writes nothing to disk.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envoy_fetcher.release import write_atomic

PollResult = Literal["never", "changed", "not_modified", "missing", "error"]


class FetcherState(BaseModel):
    """Status of one fetcher, shown by ``nightjar-fetcher status``."""

    model_config = ConfigDict(extra="ignore")

    node: str = ""
    applied_version: str | None = None
    release: str | None = None
    applied_at: datetime | None = None
    last_poll: PollResult = "never"
    last_poll_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    bad_versions: dict[str, str] = Field(default_factory=dict)


def load_state(path: Path) -> FetcherState:
    """The saved state, or a fresh one when there is none (or it is unreadable)."""
    try:
        return FetcherState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return FetcherState()


def save_state(path: Path, state: FetcherState) -> None:
    write_atomic(path, state.model_dump_json(indent=1).encode())
