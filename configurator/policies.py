"""Traffic policy attributes of a ``service-settings`` instance: raw strings -> typed policies.

Each policy is one compact key (docs/cloud-map.md). A value that does not fit its form is
reported as a problem naming the key, the value and the accepted form, and that policy keeps its
default: the service-color and its other keys are unaffected, and the bad text never leaves
this module (only the parsed numbers and names below reach a template). ``SHIFT`` is parsed
here like the others; what it does each cycle is ``configurator.shift`` and ``shifter``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from configurator.shift import MAX_ALARMS, MAX_EVERY_SECONDS, MAX_STEPS, ShiftDecl
from shared.models import NAME_RE, SHIFT_KEY

DURATION_FORM = re.compile(r"^([0-9]{1,7})(ms|s)\Z")
INT_FORM = re.compile(r"^[0-9]{1,9}\Z")
PERCENT_FORM = re.compile(r"^([0-9]{1,3})%\Z")
HC_PATH_FORM = re.compile(r"^/(?:[A-Za-z0-9._~!$&()*+,;=:@/-]|%[0-9A-Fa-f]{2}){0,511}\Z")
MAX_DURATION_MS = 3_600_000
RETRY_EVENTS = (
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
)
LB_POLICIES = {"round-robin": "ROUND_ROBIN", "least-request": "LEAST_REQUEST", "random": "RANDOM"}
RATE_UNITS = {"s": 1000, "m": 60_000}
EVERY_FORM = re.compile(r"^([0-9]{1,6})(s|m|h)\Z")
EVERY_UNITS = {"s": 1, "m": 60, "h": 3600}
UTC_TIME_FORM = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)\Z"
)
ALARM_NAME_FORM = re.compile(r"^[!-+\--~]{1,255}\Z")  # printable ASCII, no space, no comma


class PolicyValueError(ValueError):
    """A policy value does not fit its form (internal: becomes a problem, never escapes)."""


@dataclass(frozen=True)
class Retries:
    """Route retry policy: how many retries, on which Envoy ``retry_on`` events, per-try cap."""

    num: int
    on: tuple[str, ...]
    per_try_ms: int | None = None


@dataclass(frozen=True)
class Fault:
    """Fault injection on a route: a fixed delay and/or an abort, each for a percentage."""

    delay_ms: int | None = None
    delay_percent: int = 0
    abort_status: int | None = None
    abort_percent: int = 0


@dataclass(frozen=True)
class RateLimit:
    """A local token bucket: ``tokens`` per ``interval_ms``, burst of ``tokens``."""

    tokens: int
    interval_ms: int


@dataclass(frozen=True)
class HealthCheck:
    """Active HTTP health check of a cluster."""

    path: str
    interval_ms: int = 5000
    timeout_ms: int = 2000
    healthy: int = 2
    unhealthy: int = 2


@dataclass(frozen=True)
class Outlier:
    """Outlier detection; unset parts are Envoy's own defaults, written out, except
    ``max_percent``: Envoy's 10 % never ejects a host of a service with fewer than 10 tasks."""

    consecutive_5xx: int = 5
    interval_ms: int = 10_000
    eject_ms: int = 30_000
    max_percent: int = 50


@dataclass(frozen=True)
class Limits:
    """Circuit-breaker thresholds; unset parts are Envoy's own defaults, written out."""

    connections: int = 1024
    pending: int = 1024
    requests: int = 1024
    retries: int = 3


# Without RETRIES, only failures where the request never reached the application are retried.
DEFAULT_RETRIES = Retries(2, ("connect-failure", "refused-stream"))
# RETRIES=N without on=: App Mesh's default events (503, connect-failure, refused-stream), with
# 502 and 504 added through gateway-error.
COUNT_ONLY_EVENTS = ("gateway-error", "connect-failure", "refused-stream")
DEFAULT_TIMEOUT_MS = 15_000
DEFAULT_CONNECT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class RoutePolicy:
    """What a color asks of the routes it serves. ``texts`` holds each set key's value."""

    timeout_ms: int = DEFAULT_TIMEOUT_MS
    retries: Retries = DEFAULT_RETRIES
    fault: Fault | None = None
    rate_limit: RateLimit | None = None
    texts: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def text(self, key: str) -> str:
        """The value the operator wrote for ``key``, or ``(default)``."""
        return dict(self.texts).get(key, "(default)")


@dataclass(frozen=True)
class ClusterPolicy:
    """What a color asks of its own cluster."""

    lb: str = "ROUND_ROBIN"
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    health_check: HealthCheck | None = None
    outlier: Outlier | None = None
    limits: Limits | None = None


@dataclass(frozen=True)
class Policies:
    """Every traffic policy of one service-color, and the traffic shift it declares."""

    route: RoutePolicy = RoutePolicy()
    cluster: ClusterPolicy = ClusterPolicy()
    shift: ShiftDecl | None = None


DEFAULT_POLICIES = Policies()
ROUTE_FIELDS = {  # route-level key -> RoutePolicy field
    "TIMEOUT": "timeout_ms",
    "RETRIES": "retries",
    "FAULT": "fault",
    "RATE_LIMIT": "rate_limit",
}
ROUTE_KEYS = tuple(ROUTE_FIELDS)


# -- small value forms ---------------------------------------------------------------------
def parse_duration(text: str, minimum: int = 1) -> int:
    """Milliseconds of ``<int>ms`` / ``<int>s``, from ``minimum`` to one hour."""
    match = DURATION_FORM.match(text)
    if not match:
        raise PolicyValueError(f"{text!r} is not a duration (<int>ms or <int>s)")
    ms = int(match.group(1)) * (1000 if match.group(2) == "s" else 1)
    if not minimum <= ms <= MAX_DURATION_MS:
        raise PolicyValueError(f"{text!r} must be from {minimum}ms to 3600s")
    return ms


def parse_int(text: str, low: int, high: int) -> int:
    """A plain decimal integer from ``low`` to ``high``."""
    if not INT_FORM.match(text) or not low <= int(text) <= high:
        raise PolicyValueError(f"{text!r} must be an integer from {low} to {high}")
    return int(text)


def parse_percent(text: str) -> int:
    """``<int>%`` from 0 to 100."""
    match = PERCENT_FORM.match(text)
    if not match or int(match.group(1)) > 100:
        raise PolicyValueError(f"{text!r} must be a percentage from 0% to 100%")
    return int(match.group(1))


def parse_options(tokens: list[str], allowed: set[str]) -> dict[str, str]:
    """``name=value`` tokens, each name from ``allowed`` at most once."""
    options: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        if not sep or name not in allowed or name in options or not value:
            raise PolicyValueError(f"{token!r} is not one of {'=, '.join(sorted(allowed))}=")
        options[name] = value
    return options


def format_duration(ms: int) -> str:
    """Milliseconds as an Envoy (protobuf JSON) duration: ``"0.300s"``."""
    return f"{ms // 1000}.{ms % 1000:03d}s"


# -- one parser per key --------------------------------------------------------------------
def parse_timeout(value: str) -> int:
    return 0 if value == "0" else parse_duration(value)


def parse_retries(value: str) -> Retries:
    count, *rest = value.split()
    num = parse_int(count, 0, 10)
    options = parse_options(rest, {"on", "per-try"})
    on: tuple[str, ...] = COUNT_ONLY_EVENTS
    if "on" in options:
        events = options["on"].split(",")
        if any(e not in RETRY_EVENTS for e in events) or len(set(events)) != len(events):
            raise PolicyValueError(f"on={options['on']!r}: events are {','.join(RETRY_EVENTS)}")
        on = tuple(events)
    per_try = parse_duration(options["per-try"]) if "per-try" in options else None
    return Retries(num, on, per_try)


def parse_health_check(value: str) -> HealthCheck:
    path, *rest = value.split()
    if not HC_PATH_FORM.match(path):
        raise PolicyValueError(f"{path!r} is not a URL path starting with '/'")
    options = parse_options(rest, {"interval", "timeout", "healthy", "unhealthy"})
    numbers: dict[str, int] = {}
    for name, target in (("interval", "interval_ms"), ("timeout", "timeout_ms")):
        if name in options:
            numbers[target] = parse_duration(options[name])
    for name in ("healthy", "unhealthy"):
        if name in options:
            numbers[name] = parse_int(options[name], 1, 100)
    return HealthCheck(path, **numbers)


def parse_outlier(value: str) -> Outlier:
    options = parse_options(value.split(), {"5xx", "interval", "eject", "max"})
    outlier = Outlier()
    if "5xx" in options:
        outlier = replace(outlier, consecutive_5xx=parse_int(options["5xx"], 1, 1000))
    if "interval" in options:
        outlier = replace(outlier, interval_ms=parse_duration(options["interval"]))
    if "eject" in options:
        outlier = replace(outlier, eject_ms=parse_duration(options["eject"]))
    if "max" in options:
        outlier = replace(outlier, max_percent=parse_percent(options["max"]))
    return outlier


def parse_limits(value: str) -> Limits:
    options = parse_options(value.split(), {"connections", "pending", "requests", "retries"})
    limits = Limits()
    for name, number in options.items():
        limits = replace(limits, **{name: parse_int(number, 0 if name == "retries" else 1, 10**8)})
    return limits


def parse_lb(value: str) -> str:
    if value not in LB_POLICIES:
        raise PolicyValueError(f"{value!r} is not one of {', '.join(LB_POLICIES)}")
    return LB_POLICIES[value]


def parse_fault(value: str) -> Fault:
    fault = Fault()
    for name, spec in parse_options(value.split(), {"delay", "abort"}).items():
        amount, sep, percent = spec.partition("@")
        if not sep:
            raise PolicyValueError(f"{name}={spec!r} needs @<pct>")
        if name == "delay":
            fault = replace(
                fault, delay_ms=parse_duration(amount), delay_percent=parse_percent(percent)
            )
        else:
            status = parse_int(amount, 200, 599)
            fault = replace(fault, abort_status=status, abort_percent=parse_percent(percent))
    return fault


def parse_rate_limit(value: str) -> RateLimit:
    count, sep, unit = value.partition("/")
    if not sep or unit not in RATE_UNITS:
        raise PolicyValueError(f"{value!r} is not <n>/s or <n>/m")
    return RateLimit(parse_int(count, 1, 10**6), RATE_UNITS[unit])


def parse_utc_time(text: str) -> datetime:
    """An RFC 3339 timestamp in UTC (``Z`` or ``+00:00``), to the microsecond at most."""
    if not UTC_TIME_FORM.match(text):
        raise PolicyValueError(f"{text!r} is not an RFC 3339 UTC time (2026-11-21T11:36:00Z)")
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise PolicyValueError(f"{text!r} is not a real time: {err}") from err


def parse_every(text: str) -> int:
    """Seconds of ``<int>s``, ``<int>m`` or ``<int>h``, from 1 s to 7 days."""
    match = EVERY_FORM.match(text)
    if not match:
        raise PolicyValueError(f"every={text!r} is not <int>s, <int>m or <int>h")
    seconds = int(match.group(1)) * EVERY_UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_EVERY_SECONDS:
        raise PolicyValueError(f"every={text!r} must be from 1s to 168h")
    return seconds


def parse_steps(text: str) -> tuple[int, ...]:
    """Strictly increasing percentages (1-100), the last one 100, at most MAX_STEPS."""
    try:
        steps = tuple(parse_int(part, 1, 100) for part in text.split(","))
    except PolicyValueError as err:
        raise PolicyValueError(f"steps={text!r}: {err}") from err
    if len(steps) > MAX_STEPS:
        raise PolicyValueError(f"steps={text!r} has more than {MAX_STEPS} steps")
    if list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise PolicyValueError(f"steps={text!r} must increase strictly and end with 100")
    return steps


def parse_alarms(text: str) -> tuple[str, ...]:
    """Distinct CloudWatch alarm names, comma-separated (no spaces), at most MAX_ALARMS."""
    names = tuple(text.split(","))
    if any(not ALARM_NAME_FORM.match(n) for n in names) or len(set(names)) != len(names):
        raise PolicyValueError(
            f"alarms={text!r}: distinct alarm names of printable ASCII without spaces or commas"
        )
    if len(names) > MAX_ALARMS:
        raise PolicyValueError(f"alarms={text!r} names more than {MAX_ALARMS} alarms")
    return names


def parse_shift(value: str) -> ShiftDecl:
    options = parse_options(value.split(), {"from", "steps", "every", "alarms", "start", "abort"})
    missing = [name for name in ("from", "steps", "every") if name not in options]
    if missing:
        raise PolicyValueError(f"{'=, '.join(missing)}= missing")
    if not NAME_RE.match(options["from"]):
        raise PolicyValueError(f"from={options['from']!r} is not a color name")
    return ShiftDecl(
        from_color=options["from"],
        steps=parse_steps(options["steps"]),
        every_seconds=parse_every(options["every"]),
        alarms=parse_alarms(options["alarms"]) if "alarms" in options else (),
        start=parse_utc_time(options["start"]) if "start" in options else None,
        abort=parse_utc_time(options["abort"]) if "abort" in options else None,
    )


_Parser = Callable[[str], Any]
# key -> (parser, accepted form shown in problems, the Policies field it sets)
PARSERS: dict[str, tuple[_Parser, str]] = {
    "TIMEOUT": (parse_timeout, "<int>ms or <int>s, 0 = none"),
    "RETRIES": (
        parse_retries,
        f"N (0-10) or 'N on=<events> per-try=<d>', events {','.join(RETRY_EVENTS)}",
    ),
    "HEALTH_CHECK": (
        parse_health_check,
        "'<path> interval=<d> timeout=<d> healthy=<n> unhealthy=<n>' (all but path optional)",
    ),
    "OUTLIER": (parse_outlier, "any of '5xx=<n> interval=<d> eject=<d> max=<pct>'"),
    "LIMITS": (parse_limits, "any of 'connections=<n> pending=<n> requests=<n> retries=<n>'"),
    "LB": (parse_lb, "round-robin, least-request or random"),
    "CONNECT_TIMEOUT": (parse_duration, "<int>ms or <int>s"),
    "FAULT": (parse_fault, "'delay=<d>@<pct> abort=<status>@<pct>' (either or both)"),
    "RATE_LIMIT": (parse_rate_limit, "<n>/s or <n>/m"),
    SHIFT_KEY: (
        parse_shift,
        "'from=<color> steps=<pct>,...,100 every=<n>s|m|h [alarms=<name>,...]"
        " [start=<RFC 3339 UTC>]'",
    ),
}
DROPPED = {SHIFT_KEY: "the shift is ignored and the declared weights apply"}
POLICY_KEYS = frozenset(PARSERS)
_CLUSTER_FIELDS = {
    "HEALTH_CHECK": "health_check",
    "OUTLIER": "outlier",
    "LIMITS": "limits",
    "LB": "lb",
    "CONNECT_TIMEOUT": "connect_timeout_ms",
}


def parse_policy(key: str, value: str) -> tuple[Any, str] | str:
    """``(parsed value, normalized text)`` for one policy key, or why it was refused."""
    parser, form = PARSERS[key]
    text = " ".join(value.split())
    try:
        if not text or not text.isascii() or not text.isprintable():
            raise PolicyValueError("the value is empty or not printable ASCII")
        return parser(text), text
    except PolicyValueError as err:
        dropped = DROPPED.get(key, f"the {key} policy is dropped (default applies)")
        return f"{err}; accepted form: {form}; {dropped}"


def read_policies(attributes: dict[str, str], report: Callable[[str, str], None]) -> Policies:
    """The policies of one ``service-settings`` instance; each bad key is ``report``-ed."""
    shift: ShiftDecl | None = None
    route: dict[str, Any] = {}
    cluster: dict[str, Any] = {}
    texts = []
    for key in sorted(POLICY_KEYS & attributes.keys()):
        parsed = parse_policy(key, attributes[key])
        if isinstance(parsed, str):
            report(f"attribute {key!r} = {attributes[key]!r}", parsed)
            continue
        value, text = parsed
        if key == SHIFT_KEY:
            shift = value
        elif key in ROUTE_FIELDS:
            route[ROUTE_FIELDS[key]] = value
            texts.append((key, text))
        else:
            cluster[_CLUSTER_FIELDS[key]] = value
    return Policies(RoutePolicy(**route, texts=tuple(texts)), ClusterPolicy(**cluster), shift)
