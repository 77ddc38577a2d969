"""The cycle's shift stage: every ``SHIFT`` declaration -> the weights it serves and its state.

It sits between ``conventions`` and ``mesh`` (``build.ModelStage``): ``Shifter.prepare`` sees
every namespace's validated model once and reads the alarms their unfinished shifts watch (one
request for all shifts); ``Shifter.apply`` takes one model and returns it with the route weights
of each shifting pair rewritten, so everything downstream (route merging, the route-policy
winner, templates) sees the effective weights. ``states`` is what the version records and the
next cycle reads back.

On a route both colors declare, the new color gets ``percent`` % of the pair's total weight.
Weights are integers, so the route's weights (the other colors' too, which keeps their share)
are multiplied by the smallest factor that makes the split exact, unless that would overflow
Envoy's weight sum (then the split is rounded). A finished shift serves the weights it
recorded until its declaration goes away, so ``nightjar shift finish`` can write them into the
colors' route keys in any order without a cycle noticing a difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from configurator.alarms import AlarmSource, StaticAlarms
from configurator.conventions import NamespaceModel, RouteDecl, ServiceColor
from configurator.errors import AlarmReadError
from configurator.report import ShiftChange
from configurator.shift import (
    MAX_ROUTE_WEIGHT_SUM,
    Progress,
    ShiftDecl,
    Signals,
    advance,
    exact_scale,
    pair_weights,
    route_label,
)
from shared.logs import get_logger
from shared.models import SHIFT_KEY, Problem, ShiftState

log = get_logger(__name__)

_RouteKey = tuple[str, tuple[str, str] | None]


ALARMS_WHERE = "cloudwatch"  # the ``where`` of the problem "alarms cannot be read"


def shift_problems(problems: Sequence[Problem]) -> set[Problem]:
    """The problems about traffic shifts: bad SHIFT values, shifts that cannot run, unknown or
    unreadable alarms. A change in them publishes (``nightjar shift status`` shows them)."""
    return {
        p
        for p in problems
        if p.item.startswith((f"attribute '{SHIFT_KEY}'", f"{SHIFT_KEY} of "))
        or p.where == ALARMS_WHERE
    }


def state_key(namespace: str, service: str) -> str:
    """Where a service's shift state lives in the version index: ``<namespace>/<service>``."""
    return f"{namespace}/{service}"


@dataclass(frozen=True)
class _Pair:
    """One route of one shift: the declared weights, and either the split or fixed weights."""

    key: _RouteKey
    label: str
    to_weight: int
    from_weight: int
    percent: int
    fixed: tuple[int, int] | None = None  # a finished shift's recorded weights

    @property
    def total(self) -> int:
        return sum(self.fixed) if self.fixed else self.to_weight + self.from_weight

    @property
    def scale(self) -> int:
        return 1 if self.fixed else exact_scale(self.percent, self.total)

    def weights(self, scale: int) -> tuple[int, int]:
        if self.fixed:
            return self.fixed[0] * scale, self.fixed[1] * scale
        return pair_weights(self.percent, self.total, scale)


@dataclass(frozen=True)
class _Plan:
    to: ServiceColor
    decl: ShiftDecl
    progress: Progress
    pairs: tuple[_Pair, ...]  # empty while the declared weights apply


class Shifter:
    """Runs every shift of one cycle against the states the current version recorded."""

    def __init__(
        self,
        recorded: Mapping[str, ShiftState],
        now: datetime,
        source: AlarmSource | None = None,
    ) -> None:
        self.recorded = dict(recorded)
        self.now = now
        self.source: AlarmSource = source if source is not None else StaticAlarms()
        self.alarms: Mapping[str, str] | None = {}  # None: CloudWatch could not be read
        self._states: dict[str, ShiftState] = {}

    # -- before any namespace is changed -------------------------------------------------
    def alarm_names(self, models: Sequence[NamespaceModel]) -> list[str]:
        """Every alarm a declared, unfinished shift watches."""
        names: set[str] = set()
        for model in models:
            for sc in model.service_colors:
                decl = sc.policies.shift
                if decl is None or decl.abort is not None:
                    continue
                old = self.recorded.get(state_key(model.name, sc.service))
                if old is None or old.declaration != decl.identity or not _finished(old):
                    names.update(decl.alarms)
        return sorted(names)

    def prepare(self, models: Sequence[NamespaceModel]) -> list[Problem]:
        """Read the states of the alarms the shifts watch, in one request for all of them; if
        CloudWatch cannot answer, that is a problem and shifts watching alarms hold."""
        names = self.alarm_names(models)
        if not names:
            return []
        try:
            self.alarms = self.source.states(names)
        except AlarmReadError as err:
            log.error("alarms.unreadable", alarms=len(names), error=str(err))
            self.alarms = None
            reason = f"{err}; shifts watching alarms hold their step until they can be read"
            return [Problem(where=ALARMS_WHERE, item=f"{len(names)} alarm(s)", reason=reason)]
        return []

    # -- during the build (one namespace at a time) ----------------------------------------
    def apply(self, model: NamespaceModel, problems: list[Problem]) -> NamespaceModel:
        """``model`` with every shift's effective weights; its states are kept for ``states``."""
        by_service: dict[str, list[ServiceColor]] = {}
        for sc in model.service_colors:
            if sc.policies.shift is not None:
                by_service.setdefault(sc.service, []).append(sc)
        plans = []
        for service, colors in sorted(by_service.items()):
            if len(colors) > 1:
                said = ", ".join(f"{sc.service}/{sc.color}" for sc in colors)
                problems.append(
                    Problem(
                        where=model.name,
                        item=f"SHIFT of service {service!r}",
                        reason=f"declared by {said}: a service runs one shift at a time, so"
                        " none applies (the declared weights do)",
                    )
                )
                continue
            plan = self._plan(model, colors[0], problems)
            if plan is not None:
                plans.append(plan)
        shifted = _rewrite(model, plans)
        for plan in plans:
            self._states[state_key(model.name, plan.to.service)] = _state(model.name, plan)
        return shifted

    def _plan(
        self, model: NamespaceModel, to: ServiceColor, problems: list[Problem]
    ) -> _Plan | None:
        decl = to.policies.shift
        assert decl is not None
        item = f"SHIFT of {to.service}/{to.color}"

        def problem(reason: str) -> None:
            problems.append(Problem(where=model.name, item=item, reason=reason))

        wanted = (to.service, decl.from_color)
        source = next((sc for sc in model.service_colors if (sc.service, sc.color) == wanted), None)
        if decl.from_color == to.color or source is None:
            why = "is the declaring color" if decl.from_color == to.color else "does not exist"
            problem(f"from={decl.from_color} {why}; the shift is ignored (declared weights apply)")
            return None
        shared = _route_weights(to).keys() & _route_weights(source).keys()
        if not shared:
            problem(
                f"{to.color} and {decl.from_color} declare no route in common; a shift moves"
                " traffic only on routes both colors declare (ignored)"
            )
            return None
        recorded = self._recorded(model.name, to, decl)
        if recorded is not None and recorded.identity == decl.identity and recorded.finished:
            signals = Signals({}, True)  # nothing changes a finished shift
        else:
            signals = Signals(self._alarm_states(decl, problem), bool(to.endpoints))
        progress = advance(decl, recorded, self.now, signals)
        fixed = self._fixed_weights(model.name, to, progress)
        pairs: tuple[_Pair, ...] = ()
        if progress.percent is not None:
            to_routes, from_routes = _route_weights(to), _route_weights(source)
            pairs = tuple(
                _Pair(
                    key,
                    route_label(*key),
                    to_routes[key],
                    from_routes[key],
                    progress.percent,
                    fixed.get(route_label(*key)),
                )
                for key in sorted(shared, key=lambda k: route_label(*k))
            )
        return _Plan(to, decl, progress, pairs)

    def _alarm_states(
        self, decl: ShiftDecl, problem: Callable[[str], None]
    ) -> Mapping[str, str] | None:
        if self.alarms is None or decl.abort is not None:
            return self.alarms
        for name in decl.alarms:
            if name not in self.alarms:
                problem(f"no CloudWatch alarm named {name!r} here; it cannot abort the shift")
        return {name: self.alarms[name] for name in decl.alarms if name in self.alarms}

    def _recorded(self, namespace: str, to: ServiceColor, decl: ShiftDecl) -> Progress | None:
        old = self.recorded.get(state_key(namespace, to.service))
        if old is None or (old.to_color, old.from_color) != (to.color, decl.from_color):
            return None
        return Progress(
            old.declaration,
            old.start,
            old.step,
            old.percent,
            old.next_step_at,
            old.completed_at,
            old.aborted_at,
            old.abort_reason,
            old.abort_cause,
        )

    def _fixed_weights(
        self, namespace: str, to: ServiceColor, progress: Progress
    ) -> dict[str, tuple[int, int]]:
        """A finished shift's recorded weights per route (those it recorded when finished)."""
        old = self.recorded.get(state_key(namespace, to.service))
        if not progress.finished or old is None or old.declaration != progress.identity:
            return {}
        if not _finished(old):
            return {}
        return {
            label: (weights.get(old.to_color, 0), weights.get(old.from_color, 0))
            for label, weights in old.routes.items()
        }

    # -- after the build -------------------------------------------------------------------
    def states(self, failed_namespaces: Collection[str]) -> dict[str, ShiftState]:
        """The states to record: this cycle's, and the recorded ones of namespaces whose build
        failed (they keep their previous files, so their shifts keep their state)."""
        failed = set(failed_namespaces)
        kept = {k: s for k, s in self.recorded.items() if s.namespace in failed}
        mine = {k: s for k, s in self._states.items() if s.namespace not in failed}
        return dict(sorted({**kept, **mine}.items()))

    def changes(self, states: Mapping[str, ShiftState]) -> list[ShiftChange]:
        """Shifts that moved from the recorded state: a new step (or a new shift), an abort."""
        found = []
        for key, state in states.items():
            old = self.recorded.get(key)
            same = old is not None and (old.declaration, old.to_color) == (
                state.declaration,
                state.to_color,
            )
            if state.verdict == "aborted":
                if not (same and old is not None and old.verdict == "aborted"):
                    found.append(ShiftChange("aborted", state))
            elif not same or old is None or (old.step, old.verdict) != (state.step, state.verdict):
                found.append(ShiftChange("step", state))
        return found


def _finished(state: ShiftState) -> bool:
    return state.verdict in ("completed", "aborted")


def _route_weights(sc: ServiceColor) -> dict[_RouteKey, int]:
    return {(d.path, d.header): d.weight for d in sc.routes}


def _state(namespace: str, plan: _Plan) -> ShiftState:
    decl, progress = plan.decl, plan.progress
    if plan.pairs:
        routes = {
            pair.label: dict(zip((plan.to.color, decl.from_color), _own_weights(pair), strict=True))
            for pair in plan.pairs
        }
    else:
        routes = {}
    return ShiftState(
        namespace=namespace,
        service=plan.to.service,
        to_color=plan.to.color,
        from_color=decl.from_color,
        declaration=decl.identity,
        steps=list(decl.steps),
        every_seconds=decl.every_seconds,
        alarms=list(decl.alarms),
        start=progress.start,
        step=progress.step,
        percent=progress.percent,
        next_step_at=progress.next_step_at,
        completed_at=progress.completed_at,
        aborted_at=progress.aborted_at,
        abort_reason=progress.abort_reason,
        abort_cause=progress.abort_cause,
        routes=routes,
    )


def _own_weights(pair: _Pair) -> tuple[int, int]:
    """The pair's weights at its own scale (what ``nightjar shift status`` shows)."""
    scale = pair.scale if pair.total * pair.scale <= MAX_ROUTE_WEIGHT_SUM else 1
    return pair.weights(scale)


def _rewrite(model: NamespaceModel, plans: list[_Plan]) -> NamespaceModel:
    """``model`` with each shifting pair's weights, other colors on those routes scaled."""
    by_key: dict[_RouteKey, list[tuple[_Plan, _Pair]]] = {}
    for plan in plans:
        for pair in plan.pairs:
            by_key.setdefault(pair.key, []).append((plan, pair))
    if not by_key:
        return model
    weights: dict[tuple[str, str, _RouteKey], int] = {}
    scales: dict[_RouteKey, int] = {}
    for key, items in by_key.items():
        scale = math.lcm(*(pair.scale for _, pair in items))
        if scale * _weight_sum(model, key, items) > MAX_ROUTE_WEIGHT_SUM:
            scale = 1
        scales[key] = scale
        for plan, pair in items:
            new, old = pair.weights(scale)
            weights[(plan.to.service, plan.to.color, key)] = new
            weights[(plan.to.service, plan.decl.from_color, key)] = old
    colors = tuple(_reweighted(sc, weights, scales) for sc in model.service_colors)
    return replace(model, service_colors=colors)


def _weight_sum(model: NamespaceModel, key: _RouteKey, items: list[tuple[_Plan, _Pair]]) -> int:
    """The key's weights summed over every color, with each pair counted at its own total."""
    paired = {(p.to.service, c) for p, _ in items for c in (p.to.color, p.decl.from_color)}
    others = sum(
        d.weight
        for sc in model.service_colors
        if (sc.service, sc.color) not in paired
        for d in sc.routes
        if (d.path, d.header) == key
    )
    return others + sum(pair.total for _, pair in items)


def _reweighted(
    sc: ServiceColor, weights: dict[tuple[str, str, _RouteKey], int], scales: dict[_RouteKey, int]
) -> ServiceColor:
    routes: list[RouteDecl] = []
    for d in sc.routes:
        key = (d.path, d.header)
        weight = weights.get((sc.service, sc.color, key), d.weight * scales.get(key, 1))
        routes.append(d if weight == d.weight else replace(d, weight=weight))
    return sc if tuple(routes) == sc.routes else replace(sc, routes=tuple(routes))
