"""Issue 12.1: a value with a trailing newline is never a valid name, id, file name or digest.

``re.match(r"^...$")`` accepts "tuna\\n" because ``$`` also matches before a final newline; every
shared pattern must reject it, or one Cloud Map attribute could crash a cycle or a fetcher.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.digest import is_sha256, sha256_hex
from shared.models import (
    FILE_NAME_RE,
    GATEWAY_NODE_RE,
    NAME_RE,
    SIDECAR_NODE_RE,
    VERSION_ID_RE,
    FileEntry,
    VersionIndex,
    new_version_id,
)

VERSION = new_version_id(datetime(2026, 12, 1, tzinfo=UTC), "0" * 64)
ENTRY = FileEntry(sha256=sha256_hex(b"x"), size=1)


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (NAME_RE, "tuna"),
        (SIDECAR_NODE_RE, "fish.service.local/tuna/blue"),
        (GATEWAY_NODE_RE, "fish.service.local/gateway"),
        (FILE_NAME_RE, "lds.yaml"),
        (VERSION_ID_RE, VERSION),
    ],
)
def test_patterns_refuse_a_trailing_newline(pattern: object, good: str) -> None:
    """Each pattern accepts the good value and refuses it with "\\n" appended."""
    assert pattern.match(good)  # type: ignore[attr-defined]
    assert not pattern.match(good + "\n")  # type: ignore[attr-defined]


def test_a_digest_with_a_trailing_newline_is_not_a_sha256() -> None:
    """A digest followed by a newline is refused (it would name a different object key)."""
    digest = sha256_hex(b"x")
    assert is_sha256(digest)
    assert not is_sha256(digest + "\n")


@pytest.mark.parametrize(
    "nodes",
    [
        {"fish/gateway": {"files": {"notes\n": ENTRY}}},
        {"fish/tuna\n/blue": {"files": {"lds.yaml": ENTRY}}},
        {"fish/tuna/blue\n": {"files": {"lds.yaml": ENTRY}}},
    ],
)
def test_an_index_naming_a_file_or_node_with_a_newline_is_invalid(nodes: dict[str, object]) -> None:
    """Such an index never validates, so no fetcher stages it."""
    with pytest.raises(ValidationError, match="not allowed"):
        VersionIndex.model_validate(
            {"version": VERSION, "created": datetime(2026, 12, 1, tzinfo=UTC), "nodes": nodes}
        )


def test_a_version_id_with_a_newline_is_invalid() -> None:
    """A manifest or index naming ``<version>\\n`` is refused."""
    with pytest.raises(ValidationError, match="version id"):
        VersionIndex(version=VERSION + "\n", created=datetime(2026, 12, 1, tzinfo=UTC), nodes={})
