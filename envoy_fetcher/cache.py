"""The object cache: verified published bytes under ``objects/<sha256>``.

Download reads it before asking the store, so a new version costs only the objects it adds.
Every entry is verified again when read; a corrupt entry is removed and downloaded afresh.
"""

from __future__ import annotations

from pathlib import Path

from envoy_fetcher.release import write_atomic
from shared.digest import is_sha256, sha256_hex


class ObjectCache:
    """Content-addressed files in ``root`` (the config dir's ``objects/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, sha256: str) -> bytes | None:
        """Verified cached bytes of ``sha256``, or None (a corrupt entry is removed)."""
        path = self.root / sha256
        if not is_sha256(sha256) or not path.is_file():
            return None
        data = path.read_bytes()
        if sha256_hex(data) != sha256:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, sha256: str, data: bytes) -> None:
        write_atomic(self.root / sha256, data)

    def prune(self, keep: set[str]) -> None:
        """Remove every cached object whose digest is not in ``keep``."""
        for path in self.root.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
