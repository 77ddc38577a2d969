"""Envoy's inotify budget: one inotify instance per file-based xDS subscription.

Envoy creates one inotify instance for every ``path_config_source`` it follows: the bootstrap's
LDS and CDS, and each endpoint file a cluster reads (file-based EDS). Linux limits instances
per user (``fs.inotify.max_user_instances``, often 128), and without user namespaces every
process of that uid on the host shares the budget (every Envoy sidecar on one EC2 container
instance). When Envoy cannot create one it aborts with an assertion naming inotify. Counting
and wording are pure; reading the sysctl is the one edge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_instances")
BOOTSTRAP_SUBSCRIPTIONS = 2  # lds_config and cds_config of the fetcher's bootstrap
# A path_config_source key in YAML (block or flow) or JSON, quoted or not.
PATH_SOURCE = re.compile(r"""["']?\bpath_config_source["']?\s*:""")
# Envoy's RELEASE_ASSERT when inotify_init1 fails (source/common/filesystem/inotify).
ABORT_MESSAGE = re.compile(r"inotify_fd_ >= 0|max_user_instances")
REMEDY = (
    "raise fs.inotify.max_user_instances on the container instance (sysctl; the budget is "
    "shared by every process of this uid on the host), or inline the endpoints in cds.yaml "
    "with a template override (docs/templates.md, 'Inline endpoints')"
)


def count_subscriptions(files: Mapping[str, bytes]) -> int:
    """Inotify instances Envoy needs for a node's files: the bootstrap's two, plus one per
    ``path_config_source`` in them (each file-based EDS cluster has one)."""
    found = sum(
        len(PATH_SOURCE.findall(data.decode("utf-8", "replace"))) for data in files.values()
    )
    return BOOTSTRAP_SUBSCRIPTIONS + found


def read_instance_limit(path: Path = LIMIT_FILE) -> int | None:
    """``fs.inotify.max_user_instances``, or None where it cannot be read (not Linux)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def over_limit(needed: int, limit: int | None) -> str | None:
    """Why a version cannot run within the inotify budget, or None when it fits (or the limit
    is unknown)."""
    if limit is None or needed <= limit:
        return None
    return (
        f"this version needs {needed} inotify instances (one per file-based xDS subscription) "
        f"but fs.inotify.max_user_instances is {limit}: Envoy will abort loading it; {REMEDY}"
    )


def aborted_for_inotify(output: str) -> bool:
    """Whether Envoy's last log lines are its abort for want of an inotify instance."""
    return bool(ABORT_MESSAGE.search(output))


def abort_reason(limit: int | None) -> str:
    """The rejection reason for a version Envoy aborted on because inotify ran out."""
    shown = "unknown" if limit is None else str(limit)
    return (
        "envoy aborted: it could not create an inotify instance (fs.inotify.max_user_instances"
        f" = {shown}; one per file-based xDS subscription, counted per uid across the host); "
        f"{REMEDY}"
    )
