"""``nightjar-fetcher health``: is this node served what the manifest says, by a live Envoy?

The verdict is a pure function of the fetcher's state file, the age of its last successful poll
and (when the fetcher supervises Envoy) whether Envoy's admin API says LIVE, so every rule is
unit-tested without a process. The command is what an ECS container healthCheck runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_fetcher.state import FetcherState


@dataclass(frozen=True)
class HealthInput:
    """What ``judge_health`` looks at, gathered by the CLI."""

    state: FetcherState
    poll_age: float | None  # seconds since the last successful poll; None: never
    max_poll_age: float
    envoy_live: bool | None  # None: Envoy is not supervised here (not asked)


def judge_health(given: HealthInput) -> list[str]:
    """Every reason the node is unhealthy (empty: healthy), one sentence each."""
    state = given.state
    problems = []
    if given.poll_age is None:
        problems.append("no poll has reached the bundle store yet")
    elif given.poll_age > given.max_poll_age:
        problems.append(
            f"last successful poll {given.poll_age:.0f}s ago (limit {given.max_poll_age:g}s, "
            f"NJ_HEALTH_MAX_POLL_AGE); last error: {state.last_error or '-'}"
        )
    if state.last_release in ("rejected", "rolled_back"):
        version = state.last_release_version
        reason = state.bad_versions.get(version or "", state.last_error or "")
        problems.append(f"version {version} was {state.last_release.replace('_', ' ')}: {reason}")
    if state.applied_version is None:
        problems.append("no release applied yet")
    elif state.manifest_version and state.applied_version != state.manifest_version:
        problems.append(
            f"serving {state.applied_version}, not the current version {state.manifest_version}"
        )
    if given.envoy_live is False:
        problems.append("envoy's admin API does not answer LIVE")
    if given.envoy_live is not None and state.applied_version and state.confirm != "accepted":
        problems.append(
            f"envoy has not confirmed {state.applied_version} (confirm: {state.confirm or '-'})"
        )
    return problems
