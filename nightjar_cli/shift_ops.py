"""What ``nightjar shift`` does: declare, inspect, abort and finish traffic shifts.

A shift is declared in Cloud Map (the ``SHIFT`` key of the new color, which the configurator
reads) and its progress lives in the bundle store (the current version's ``shifts``, which the
configurator writes). ``start``, ``abort`` and ``finish`` write Cloud Map; ``status`` reads the
store only. Every value written is checked with the configurator's own parser first, so what
the CLI writes is what a cycle accepts. docs/progressive-delivery.md walks through them.

The configurator's modules (pure parsing, no template engine) are imported when a command
runs, never when the CLI loads: the other commands do not load configurator code at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nightjar_cli.errors import OperatorError
from nightjar_cli.operations import load_index
from nightjar_cli.shift_cloudmap import CloudMapSettings, ColorSettings
from shared.models import SETTINGS_INSTANCE, SHIFT_KEY, Problem, ShiftState, VersionIndex
from shared.store import BundleStore

if TYPE_CHECKING:
    from configurator.shift import ShiftDecl


class ShiftRequestError(OperatorError):
    """The shift asked for cannot be declared as given (a usage error: exit 2)."""


@dataclass(frozen=True)
class ScheduleStep:
    """When one step of a newly declared shift begins."""

    step: int
    percent: int
    at: str


@dataclass(frozen=True)
class Declared:
    """What ``start`` or ``abort`` wrote into the new color's ``service-settings``."""

    namespace: str
    service: str
    to_color: str
    from_color: str
    cloud_map_service: str
    shift: str
    schedule: list[ScheduleStep]


@dataclass(frozen=True)
class Finished:
    """What ``finish`` wrote: each color's route weights, and the SHIFT it removed."""

    namespace: str
    service: str
    verdict: str
    weights: dict[str, dict[str, int]]  # color -> route attribute key -> weight written
    removed_from: str


@dataclass(frozen=True)
class ShiftStatus:
    """The shifts the current version records, and the problems of SHIFT declarations."""

    version: str
    shifts: list[dict[str, Any]]
    problems: list[dict[str, str]]


# -- reading ---------------------------------------------------------------------------------
def namespace_of(store: BundleStore, given: str | None) -> str:
    """``given``, or the only namespace the current version covers."""
    if given:
        return given
    index = _current_index(store)
    if index is None:
        raise ShiftRequestError(
            "nothing is published yet, so the mesh is unknown: pass --namespace"
        )
    names = index.summary.namespaces
    if len(names) != 1:
        raise ShiftRequestError(f"the mesh has namespaces {', '.join(names)}: pass --namespace")
    return names[0]


def recorded_shift(store: BundleStore, namespace: str, service: str) -> ShiftState | None:
    """The state the current version records for ``service``'s shift, if any."""
    index = _current_index(store)
    return None if index is None else index.shifts.get(f"{namespace}/{service}")


def _current_index(store: BundleStore) -> VersionIndex | None:
    """The current version's index (verified), or None when nothing is published yet."""
    read = store.read_manifest()
    if read is None:
        return None
    return store.get_index(read.manifest.version, read.manifest.index_sha256)


def status(store: BundleStore, service: str | None) -> ShiftStatus:
    """Every shift of the current version (or ``service``'s), with its SHIFT problems."""
    index = load_index(store, None)
    shifts = [
        {**s.model_dump(mode="json"), "verdict": s.verdict}
        for s in index.shifts.values()
        if service is None or s.service == service
    ]
    return ShiftStatus(index.version, shifts, _shift_problems(index.summary.problems))


def _shift_problems(problems: list[Problem]) -> list[dict[str, str]]:
    from configurator.shifter import shift_problems

    found = shift_problems(problems)
    return [p.model_dump() for p in problems if p in found]


def colors_of(cloudmap: CloudMapSettings, namespace: str, service: str) -> dict[str, ColorSettings]:
    """The colors of ``service``; OperatorError when it has none."""
    colors = cloudmap.colors(namespace, service)
    if not colors:
        raise OperatorError(
            f"no Cloud Map service in {namespace} has a {SETTINGS_INSTANCE} instance with"
            f" SERVICE={service}; check the service name and --namespace"
        )
    return colors


def _declaring(colors: dict[str, ColorSettings]) -> list[ColorSettings]:
    return [c for _, c in sorted(colors.items()) if SHIFT_KEY in c.attributes]


def _parsed(text: str) -> ShiftDecl | str:
    from configurator.policies import parse_policy

    parsed = parse_policy(SHIFT_KEY, text)
    if isinstance(parsed, str):
        return parsed
    decl: ShiftDecl = parsed[0]
    return decl


# -- start -----------------------------------------------------------------------------------
def start(
    cloudmap: CloudMapSettings,
    namespace: str,
    service: str,
    *,
    to_color: str,
    from_color: str | None,
    steps: str,
    every: str,
    alarms: tuple[str, ...],
    now: datetime,
) -> Declared:
    """Write ``SHIFT=... start=<now>`` into ``to_color``'s settings, keeping the others."""
    from configurator.shift import format_time

    colors = colors_of(cloudmap, namespace, service)
    to = _color(colors, service, to_color)
    source = _source(colors, service, to_color, from_color)
    others = [c for c in _declaring(colors) if c.color != to_color]
    if others:
        other = others[0]
        raise OperatorError(
            f"{service}/{other.color} already declares SHIFT ({other.attributes[SHIFT_KEY]}):"
            " a service runs one shift at a time; 'nightjar shift finish' or remove it first"
        )
    text = f"from={source.color} steps={steps} every={every}"
    text += f" alarms={','.join(alarms)}" if alarms else ""
    text += f" start={format_time(now.replace(microsecond=0))}"
    decl = _parsed(text)
    if isinstance(decl, str):
        raise ShiftRequestError(f"--steps/--every/--alarm: {decl}")
    if not _shared_routes(namespace, to, source):
        raise OperatorError(
            f"{service}/{to.color} and {service}/{source.color} declare no route in common: a"
            " shift moves traffic only on routes both colors declare (add the route to both)"
        )
    cloudmap.write(to, {**to.attributes, SHIFT_KEY: decl.text})
    return _declared(namespace, service, to, decl)


def _color(colors: dict[str, ColorSettings], service: str, color: str) -> ColorSettings:
    if color not in colors:
        raise OperatorError(f"{service} has no color {color!r}; it has {', '.join(sorted(colors))}")
    return colors[color]


def _source(
    colors: dict[str, ColorSettings], service: str, to_color: str, from_color: str | None
) -> ColorSettings:
    if from_color is not None:
        if from_color == to_color:
            raise ShiftRequestError("--from and --to name the same color")
        return _color(colors, service, from_color)
    others = sorted(c for c in colors if c != to_color)
    if len(others) != 1:
        raise ShiftRequestError(
            f"{service} has colors {', '.join(sorted(colors))}: say which one traffic leaves"
            " with --from"
        )
    return colors[others[0]]


def _routes(namespace: str, color: ColorSettings) -> dict[str, int]:
    """Route label -> declared weight, as the configurator reads them."""
    from configurator.conventions import read_service
    from configurator.discovery import RawInstance, RawService
    from configurator.shift import route_label

    raw = RawService(
        color.service_id,
        color.cloud_map_service,
        (RawInstance(SETTINGS_INSTANCE, color.attributes),),
    )
    sc = read_service(namespace, raw, [])
    return {} if sc is None else {route_label(d.path, d.header): d.weight for d in sc.routes}


def _shared_routes(namespace: str, to: ColorSettings, source: ColorSettings) -> list[str]:
    return sorted(_routes(namespace, to).keys() & _routes(namespace, source).keys())


def _declared(namespace: str, service: str, to: ColorSettings, decl: ShiftDecl) -> Declared:
    from configurator.shift import format_time

    begin = decl.start or decl.abort
    assert begin is not None
    schedule = [
        ScheduleStep(n + 1, percent, format_time(begin + timedelta(seconds=n * decl.every_seconds)))
        for n, percent in enumerate(decl.steps)
    ]
    return Declared(
        namespace, service, to.color, decl.from_color, to.cloud_map_service, decl.text, schedule
    )


# -- abort -----------------------------------------------------------------------------------
def abort(
    cloudmap: CloudMapSettings, store: BundleStore, namespace: str, service: str, now: datetime
) -> tuple[Declared, bool]:
    """Add ``abort=<now>`` to the service's SHIFT; (what is declared, whether it was written)."""
    to, decl = _declared_shift(colors_of(cloudmap, namespace, service), service)
    recorded = recorded_shift(store, namespace, service)
    same = recorded is not None and recorded.declaration == decl.identity
    if same and recorded is not None and recorded.verdict == "completed":
        raise OperatorError(
            f"the shift of {service} to {to.color} completed at {recorded.completed_at}: nothing"
            f" to abort; 'nightjar shift finish {service}' makes it permanent"
        )
    if decl.abort is not None:
        return _declared(namespace, service, to, decl), False
    aborted = replace(decl, abort=now.replace(microsecond=0))
    cloudmap.write(to, {**to.attributes, SHIFT_KEY: aborted.text})
    return _declared(namespace, service, to, aborted), True


def _declared_shift(
    colors: dict[str, ColorSettings], service: str
) -> tuple[ColorSettings, ShiftDecl]:
    declaring = _declaring(colors)
    if not declaring:
        raise OperatorError(f"no color of {service} declares SHIFT: there is no shift to act on")
    if len(declaring) > 1:
        said = " and ".join(c.color for c in declaring)
        raise OperatorError(
            f"{said} of {service} both declare SHIFT, so the configurator ignores both; remove one"
        )
    to = declaring[0]
    decl = _parsed(to.attributes[SHIFT_KEY])
    if isinstance(decl, str):
        raise OperatorError(
            f"the SHIFT of {service}/{to.color} is invalid, so the configurator ignores it"
            f" ({decl}); fix or remove it"
        )
    return to, decl


# -- finish ----------------------------------------------------------------------------------
def finish(
    cloudmap: CloudMapSettings, store: BundleStore, namespace: str, service: str
) -> Finished:
    """A completed (or aborted) shift made permanent: the weights it serves become the colors'
    route weights and SHIFT is removed, so the next cycle renders exactly the same files."""
    colors = colors_of(cloudmap, namespace, service)
    to, decl = _declared_shift(colors, service)
    source = _color(colors, service, decl.from_color)
    recorded = recorded_shift(store, namespace, service)
    if (
        recorded is None
        or recorded.declaration != decl.identity
        or recorded.verdict
        not in (
            "completed",
            "aborted",
        )
    ):
        raise OperatorError(_not_finished(service, recorded, decl))
    final = _final_weights(namespace, to, source, recorded)
    written = {}
    for color in (source, to):  # both orders render alike: a finished shift is fixed
        attributes, changed = _with_weights(namespace, color, final)
        if color is to:
            attributes.pop(SHIFT_KEY, None)
        cloudmap.write(color, attributes)
        written[color.color] = changed
    return Finished(namespace, service, recorded.verdict, written, to.color)


def _not_finished(service: str, recorded: ShiftState | None, decl: ShiftDecl) -> str:
    if recorded is None or recorded.declaration != decl.identity:
        return (
            f"the configurator has not published this shift of {service} yet; wait for its next"
            " cycle ('nightjar shift status')"
        )
    return (
        f"the shift of {service} is {recorded.verdict} (step {recorded.step + 1} of"
        f" {len(recorded.steps)}, next step at {recorded.next_step_at}): finish it once it"
        f" completed, or 'nightjar shift abort {service}' first"
    )


def _final_weights(
    namespace: str, to: ColorSettings, source: ColorSettings, recorded: ShiftState
) -> dict[str, dict[str, int]]:
    """Route label -> color -> the weight the finished shift serves."""
    to_routes, from_routes = _routes(namespace, to), _routes(namespace, source)
    final = {}
    for label in sorted(to_routes.keys() & from_routes.keys()):
        total = to_routes[label] + from_routes[label]
        new = total if recorded.verdict == "completed" else 0
        final[label] = recorded.routes.get(label, {to.color: new, source.color: total - new})
    return final


def _with_weights(
    namespace: str, color: ColorSettings, final: dict[str, dict[str, int]]
) -> tuple[dict[str, str], dict[str, int]]:
    """``color``'s attributes with each shifted route key's weight set; the keys changed."""
    attributes = dict(color.attributes)
    changed = {}
    for key in sorted(attributes):
        label = _label_of(namespace, key, attributes[key])
        if label is not None and label in final and color.color in final[label]:
            changed[key] = final[label][color.color]
            attributes[key] = str(changed[key])
    return attributes, changed


def _label_of(namespace: str, key: str, value: str) -> str | None:
    """The route label of one attribute, if it is a valid route key."""
    one = ColorSettings("", "", {"SERVICE": "s", "COLOR": "c", key: value})
    labels = list(_routes(namespace, one))
    return labels[0] if labels else None
