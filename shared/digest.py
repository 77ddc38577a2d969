"""Content digests: every object in the store is named by the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import re

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")  # \Z: no trailing newline accepted


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: str) -> bool:
    """True when ``value`` is a lowercase 64-character hex sha256."""
    return bool(SHA256_RE.match(value))
