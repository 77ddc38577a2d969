"""Per-task values in published files: ``${NJ_LISTENER_PORT}`` and friends.

Templates are rendered once for every task of a node, but a few values differ per task (the
listener port, the admin port, the address the listener binds). Templates write them as
placeholders; the fetcher fills them when it stages a release, after the file's sha256 was
verified. Only the names below are placeholders; any other ``${...}`` text is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LISTENER_ADDRESS = "NJ_LISTENER_ADDRESS"
LISTENER_PORT = "NJ_LISTENER_PORT"
ADMIN_PORT = "NJ_ADMIN_PORT"
CONFIG_DIR = "NJ_CONFIG_DIR"  # the fetcher's config dir: where Envoy finds current/<eds file>
PLACEHOLDERS = (LISTENER_ADDRESS, LISTENER_PORT, ADMIN_PORT, CONFIG_DIR)
_PATTERN = re.compile(r"\$\{(" + "|".join(PLACEHOLDERS) + r")\}")


def task_values(
    listener_address: str, listener_port: int, admin_port: int, config_dir: str
) -> dict[str, str | int]:
    """The value of every placeholder for one task."""
    return {
        LISTENER_ADDRESS: listener_address,
        LISTENER_PORT: listener_port,
        ADMIN_PORT: admin_port,
        CONFIG_DIR: config_dir,
    }


def fill_placeholders(data: bytes, values: Mapping[str, str | int]) -> bytes:
    """Replace every known placeholder in ``data`` with its value; KeyError if one is missing."""
    text = data.decode()
    return _PATTERN.sub(lambda m: str(values[m.group(1)]), text).encode()
