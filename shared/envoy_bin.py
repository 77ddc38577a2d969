"""Finding the envoy binary (both processes run it: validation and the supervised sidecar)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_envoy(name: str = "envoy") -> Path | None:
    """The envoy binary: an explicit path, on PATH, or next to this Python (a venv)."""
    if "/" in name:
        return Path(name) if Path(name).is_file() else None
    found = shutil.which(name)
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / name
    return beside if beside.is_file() else None
