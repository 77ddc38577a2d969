"""The cycle's shift stage on validated models: which routes move, by how much, and what is
recorded; every declaration it cannot run is a problem and leaves the declared weights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from configurator.conventions import NamespaceModel, read_namespace
from configurator.discovery import RawInstance, RawNamespace, RawService
from configurator.mesh import merge_routes
from configurator.shifter import Shifter
from shared.models import Problem, ShiftState

T0 = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
TASK = {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"}


def raw(*colors: dict[str, str], tasks: bool = True) -> RawNamespace:
    services = tuple(
        RawService(
            f"{a['SERVICE']}-{a['COLOR']}",
            f"{a['SERVICE']}-{a['COLOR']}",
            (RawInstance("service-settings", a), *((RawInstance("t", TASK),) if tasks else ())),
        )
        for a in colors
    )
    return RawNamespace("ns-1", "fish", services)


def model(*colors: dict[str, str], tasks: bool = True) -> NamespaceModel:
    found, problems = read_namespace(raw(*colors, tasks=tasks))
    assert problems == [], problems
    return found


def weights(m: NamespaceModel, path: str = "/tuna") -> dict[str, int]:
    (route,) = [r for r in merge_routes(m, []) if r.path == path]
    return dict(route.weights)


BLUE = {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "1", "/tuna/admin": "5"}
GREEN = {"SERVICE": "tuna", "COLOR": "green", "/tuna": "0"}
SHIFT = "from=blue steps=25,50,100 every=10s start=2026-11-21T11:00:00Z"


def run(m: NamespaceModel, recorded: dict[str, ShiftState] | None = None, seconds: float = 0):
    shifter = Shifter(recorded or {}, T0 + timedelta(seconds=seconds))
    problems: list[Problem] = []
    shifted = shifter.apply(m, problems)
    return shifted, shifter.states([]), problems


def test_only_routes_both_colors_declare_move_and_exactly() -> None:
    """blue /tuna=1, green /tuna=0 at 25 %: weights scaled to green 1, blue 3; /tuna/admin,
    which green does not declare, keeps blue's 5."""
    shifted, states, problems = run(model(BLUE, {**GREEN, "SHIFT": SHIFT}))
    assert problems == []
    assert weights(shifted) == {"tuna/blue": 3, "tuna/green": 1}
    assert weights(shifted, "/tuna/admin") == {"tuna/blue": 5}
    state = states["fish/tuna"]
    assert (state.verdict, state.step, state.percent) == ("shifting", 0, 25)
    assert state.routes == {"/tuna": {"green": 1, "blue": 3}}


def test_other_colors_on_a_shifting_route_keep_their_share() -> None:
    """A third color (canary, weight 10 of 110) keeps 10/110 of /tuna while the pair's 100
    is split 50/50; nothing is rounded."""
    canary = {"SERVICE": "tuna", "COLOR": "canary", "/tuna": "10"}
    blue = {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "99"}
    green = {"SERVICE": "tuna", "COLOR": "green", "/tuna": "1", "SHIFT": SHIFT}
    shifted, _, _ = run(model(blue, green, canary), seconds=10)
    got = weights(shifted)
    total = sum(got.values())
    assert got["tuna/canary"] * 110 == 10 * total
    assert got["tuna/green"] == got["tuna/blue"]


def test_huge_weights_are_rounded_rather_than_overflow_envoy() -> None:
    """Weights near the 1,000,000 limit on many colors: the split is rounded at scale 1 so the
    route's sum stays within a uint32."""
    colors = [{"SERVICE": "tuna", "COLOR": f"c{n}", "/tuna": "999999"} for n in range(40)]
    blue = {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "999999"}
    green = {
        "SERVICE": "tuna",
        "COLOR": "green",
        "/tuna": "1",
        "SHIFT": "from=blue steps=33,100 every=1s",
    }
    shifted, _, _ = run(model(blue, green, *colors))
    got = weights(shifted)
    assert sum(got.values()) <= 2**32 - 1
    assert got["tuna/green"] == round(0.33 * 1_000_000)
    assert got["tuna/c0"] == 999_999


def test_a_finished_shift_serves_its_recorded_weights() -> None:
    """Completed: green has the pair's former total, blue 0; later cycles reuse the recorded
    weights even when blue's declared weight is already 0 (finish writes them in any order)."""
    shifted, states, _ = run(model(BLUE, {**GREEN, "SHIFT": SHIFT}), seconds=25)
    assert states["fish/tuna"].verdict == "completed"
    assert weights(shifted) == {"tuna/blue": 0, "tuna/green": 1}
    half_written = {**BLUE, "/tuna": "0"}  # finish wrote blue, not yet green
    again, _, _ = run(model(half_written, {**GREEN, "SHIFT": SHIFT}), states, seconds=30)
    assert weights(again) == {"tuna/blue": 0, "tuna/green": 1}


def test_declarations_it_cannot_run_are_problems_and_change_nothing() -> None:
    """from= missing color, from= itself, no shared route, two colors shifting one service."""
    cases = [
        ({**GREEN, "SHIFT": "from=red steps=100 every=1s"}, BLUE, "from=red does not exist"),
        ({**GREEN, "SHIFT": "from=green steps=100 every=1s"}, BLUE, "is the declaring color"),
        (
            {"SERVICE": "tuna", "COLOR": "green", "/other": "1", "SHIFT": SHIFT},
            BLUE,
            "declare no route in common",
        ),
        (
            {**GREEN, "SHIFT": SHIFT},
            {**BLUE, "SHIFT": "from=green steps=100 every=1s"},
            "one shift",
        ),
    ]
    for green, blue, says in cases:
        m = model(blue, green)
        shifted, states, problems = run(m)
        assert shifted == m and states == {}, says
        assert len(problems) == 1 and says in problems[0].reason, problems


def test_missing_alarms_are_problems_not_aborts() -> None:
    """An alarm CloudWatch does not know is reported by name; the shift runs."""
    m = model(BLUE, {**GREEN, "SHIFT": f"{SHIFT} alarms=tuna-5xx,nope"})
    shifter = Shifter({}, T0)
    shifter.alarms = {"tuna-5xx": "OK"}
    problems: list[Problem] = []
    shifter.apply(m, problems)
    assert [p.reason for p in problems] == [
        "no CloudWatch alarm named 'nope' here; it cannot abort the shift"
    ]
    assert shifter.states([])["fish/tuna"].verdict == "shifting"


def test_no_healthy_green_endpoint_aborts_to_blue() -> None:
    """Green registered without a healthy task: blue gets 100 % in that very cycle."""
    m = model(BLUE, {**GREEN, "SHIFT": SHIFT}, tasks=False)
    shifted, states, _ = run(m)
    assert weights(shifted) == {"tuna/blue": 1, "tuna/green": 0}
    assert states["fish/tuna"].abort_cause == "unhealthy"


def test_alarm_names_skip_finished_and_aborted_shifts() -> None:
    """Only unfinished shifts' alarms are read: a completed one's and an operator-aborted
    one's are not asked for (one request per cycle covers the rest)."""
    green = {**GREEN, "SHIFT": f"{SHIFT} alarms=a,b"}
    salmon_blue = {"SERVICE": "salmon", "COLOR": "blue", "/s": "1"}
    salmon_green = {
        "SERVICE": "salmon",
        "COLOR": "green",
        "/s": "0",
        "SHIFT": "from=blue steps=100 every=1s alarms=c abort=2026-11-21T11:00:00Z",
    }
    namespace = model(BLUE, green, salmon_blue, salmon_green)
    assert Shifter({}, T0).alarm_names([namespace]) == ["a", "b"]
    _, states, _ = run(model(BLUE, green), seconds=100)
    assert states["fish/tuna"].verdict == "completed"
    assert Shifter(states, T0).alarm_names([namespace]) == []


def test_states_of_failed_namespaces_are_kept() -> None:
    """A namespace whose build failed keeps the recorded states of its shifts."""
    _, states, _ = run(model(BLUE, {**GREEN, "SHIFT": SHIFT}))
    assert Shifter(states, T0).states(["fish"]) == states
    assert Shifter(states, T0).states([]) == {}
