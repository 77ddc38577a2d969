"""The fetcher's persisted state (``state.json``): what is applied and what went wrong.

Written only when something changes, so steady-state polling writes nothing to disk.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envoy_fetcher.release import write_atomic

PollResult = Literal["never", "changed", "not_modified", "missing", "error"]
ReleaseResult = Literal["applied", "rejected", "rolled_back", "failed"]


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
    manifest_version: str | None = None  # what the manifest pointed at when last read
    last_release: ReleaseResult | None = None  # how the newest version tried ended
    last_release_version: str | None = None
    confirm: str | None = None  # Envoy's verdict on the applied release (envoy.Verdict)
    supervised: bool = False  # whether this fetcher runs Envoy (health then asks its admin API)


def load_state(path: Path) -> FetcherState:
    """The saved state, or a fresh one when there is none (or it is unreadable)."""
    try:
        return FetcherState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return FetcherState()


def save_state(path: Path, state: FetcherState) -> None:
    write_atomic(path, state.model_dump_json(indent=1).encode())


def touch_heartbeat(path: Path) -> None:
    """Mark a poll that reached the store: the file's mtime (no data write, no fsync)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def heartbeat_age(path: Path, now: float) -> float | None:
    """Seconds since the last successful poll, or None when there never was one."""
    try:
        return now - path.stat().st_mtime
    except OSError:
        return None
