"""The traffic-shift schedule as a pure function, and the SHIFT value's documented form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configurator.policies import parse_policy
from configurator.shift import (
    MAX_ROUTE_WEIGHT_SUM,
    Progress,
    ShiftDecl,
    Signals,
    advance,
    exact_scale,
    format_every,
    pair_weights,
)

T0 = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
OK = Signals({}, True)


def decl(text: str) -> ShiftDecl:
    parsed = parse_policy("SHIFT", text)
    assert not isinstance(parsed, str), parsed
    value: ShiftDecl = parsed[0]
    return value


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from=blue steps=25,50,100 every=4s", ShiftDecl("blue", (25, 50, 100), 4)),
        (
            "every=5m  steps=10,100 from=blue alarms=tuna-5xx,tuna-p99",
            ShiftDecl("blue", (10, 100), 300, ("tuna-5xx", "tuna-p99")),
        ),
        (
            "from=blue steps=100 every=2h start=2026-11-21T11:00:00Z",
            ShiftDecl("blue", (100,), 7200, start=T0),
        ),
        (
            "from=b steps=50,100 every=1s start=2026-11-21T11:00:00+00:00"
            " abort=2026-11-21T11:00:05Z",
            ShiftDecl("b", (50, 100), 1, start=T0, abort=at(5)),
        ),
    ],
)
def test_shift_values_in_every_documented_form(text: str, expected: ShiftDecl) -> None:
    """Options in any order, durations in s/m/h, optional alarms, start and abort."""
    assert decl(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("steps=25,100 every=4s", "from= missing"),
        ("from=blue steps=25,50 every=4s", "end with 100"),
        ("from=blue steps=50,25,100 every=4s", "increase strictly"),
        ("from=blue steps=0,100 every=4s", "from 1 to 100"),
        ("from=blue steps=25,100 every=4", "every='4'"),
        ("from=blue steps=25,100 every=0s", "from 1s to 168h"),
        ("from=blue steps=25,100 every=4s start=tomorrow", "RFC 3339 UTC"),
        ("from=blue steps=25,100 every=4s start=2026-11-21T11:00:00+02:00", "RFC 3339 UTC"),
        ("from=blue steps=25,100 every=4s alarms=a,a", "distinct alarm names"),
        ("from=blue steps=25,100 every=4s colour=red", "'colour=red' is not one of"),
        ("from=b/x steps=25,100 every=4s", "not a color name"),
    ],
)
def test_bad_shift_values_name_the_form_and_keep_declared_weights(text: str, says: str) -> None:
    """A bad value is refused with what is wrong, the accepted form, and what applies."""
    reason = parse_policy("SHIFT", text)
    assert isinstance(reason, str)
    assert says in reason and "accepted form: 'from=<color> steps=" in reason
    assert reason.endswith("the shift is ignored and the declared weights apply")


@given(st.text(max_size=120))
def test_hostile_shift_values_are_parsed_or_refused_never_raised(text: str) -> None:
    """Whatever Cloud Map holds, parsing returns a valid declaration or a reason."""
    parsed = parse_policy("SHIFT", text)
    if isinstance(parsed, str):
        assert "accepted form" in parsed
        return
    value: ShiftDecl = parsed[0]
    assert value.steps[-1] == 100 and list(value.steps) == sorted(set(value.steps))
    assert 1 <= value.every_seconds <= 7 * 24 * 3600
    assert all(a and " " not in a and "," not in a for a in value.alarms)
    assert decl(value.text) == value  # the canonical text reads back as the same shift


def test_the_step_is_the_clocks_and_finishes_at_100() -> None:
    """25 % from the start, 50 % after one 'every', 100 % (completed) after two."""
    d = decl("from=blue steps=25,50,100 every=4s")
    first = advance(d, None, T0, OK)
    assert (first.start, first.step, first.percent, first.next_step_at) == (T0, 0, 25, at(4))
    assert advance(d, first, at(3.9), OK) == first
    second = advance(d, first, at(4), OK)
    assert (second.step, second.percent, second.next_step_at) == (1, 50, at(8))
    done = advance(d, second, at(100), OK)
    assert (done.verdict, done.percent, done.completed_at, done.next_step_at) == (
        "completed",
        100,
        at(8),
        None,
    )


def test_a_declared_start_in_the_future_keeps_the_declared_weights() -> None:
    """Before start=, the shift is pending: percent None (declared weights), next step = start."""
    d = decl("from=blue steps=50,100 every=1m start=2026-11-21T11:00:00Z")
    pending = advance(d, None, at(-30), OK)
    assert (pending.verdict, pending.percent, pending.next_step_at) == ("pending", None, T0)
    assert advance(d, pending, at(1), OK).percent == 50


def test_an_alarm_aborts_and_the_abort_outlives_the_alarm() -> None:
    """ALARM -> 0 % in that cycle, cause and alarm named; OK afterwards changes nothing."""
    d = decl("from=blue steps=25,50,100 every=4s alarms=tuna-5xx")
    running = advance(d, None, T0, Signals({"tuna-5xx": "OK"}, True))
    aborted = advance(d, running, at(5), Signals({"tuna-5xx": "ALARM"}, True))
    assert (aborted.verdict, aborted.percent, aborted.step) == ("aborted", 0, 0)
    assert aborted.abort_cause == "alarm" and "'tuna-5xx'" in (aborted.abort_reason or "")
    assert aborted.aborted_at == at(5)
    assert advance(d, aborted, at(60), Signals({"tuna-5xx": "OK"}, True)) == aborted


def test_insufficient_data_and_missing_alarms_do_not_abort() -> None:
    """Only ALARM aborts; an alarm absent from the answer is a problem elsewhere, not an abort."""
    d = decl("from=blue steps=25,100 every=4s alarms=a,b")
    progress = advance(d, None, T0, Signals({"a": "INSUFFICIENT_DATA"}, True))
    assert progress.verdict == "shifting"


def test_the_new_color_without_healthy_endpoints_aborts() -> None:
    """No healthy endpoint of the new color while shifting aborts (cause 'unhealthy')."""
    d = decl("from=blue steps=25,100 every=4s")
    aborted = advance(d, advance(d, None, T0, OK), at(1), Signals({}, False))
    assert (aborted.verdict, aborted.percent, aborted.abort_cause) == ("aborted", 0, "unhealthy")


def test_an_operator_abort_keeps_the_shift_and_stays_after_the_marker_goes() -> None:
    """abort= (nightjar shift abort) aborts the same shift; removing it does not revive it."""
    d = decl("from=blue steps=25,100 every=4s")
    running = advance(d, None, T0, OK)
    marked = decl(f"{d.identity} abort=2026-11-21T11:00:02Z")
    assert marked.identity == d.identity
    aborted = advance(marked, running, at(3), OK)
    assert (aborted.verdict, aborted.aborted_at, aborted.abort_cause) == (
        "aborted",
        at(2),
        "operator",
    )
    assert advance(d, aborted, at(9), OK) == aborted


def test_unreadable_alarms_hold_the_step() -> None:
    """CloudWatch unreadable: the recorded step is kept; a new shift does not start."""
    d = decl("from=blue steps=25,50,100 every=4s alarms=a")
    running = advance(d, None, T0, Signals({"a": "OK"}, True))
    assert advance(d, running, at(5), Signals(None, True)) == running
    fresh = advance(d, None, T0, Signals(None, True))
    assert (fresh.percent, fresh.step) == (None, -1)


def test_a_changed_declaration_is_a_new_shift() -> None:
    """Another identity (new start, other steps) starts over; an abort does not carry over."""
    old = decl("from=blue steps=25,100 every=4s start=2026-11-21T11:00:00Z")
    aborted = advance(old, None, T0, Signals({}, False))
    new = decl("from=blue steps=25,100 every=4s start=2026-11-21T11:01:00Z")
    restarted = advance(new, aborted, at(61), OK)
    assert (restarted.verdict, restarted.percent, restarted.start) == ("shifting", 25, at(60))


steps_strategy = st.sets(st.integers(1, 99), max_size=6).map(lambda s: (*sorted(s), 100))
decls = st.builds(
    ShiftDecl,
    from_color=st.just("blue"),
    steps=steps_strategy,
    every_seconds=st.integers(1, 3600),
    alarms=st.just(("a",)),
)
offsets = st.lists(st.floats(0, 50_000, allow_nan=False), min_size=1, max_size=12).map(sorted)


@given(decls, offsets)
def test_percent_only_grows_and_always_is_what_the_clock_says(
    d: ShiftDecl, times: list[float]
) -> None:
    """Fed its own output at any cycle times, the shift's percent never decreases and equals
    the step the clock gives at each time: a restart (any gap between cycles) resumes there."""
    first = advance(d, None, T0, OK)
    progress: Progress = first
    last = first.percent or 0
    for offset in times:
        progress = advance(d, progress, at(offset), OK)
        due = min(int(offset // d.every_seconds), len(d.steps) - 1)
        assert progress.percent == d.steps[due] and progress.step == due
        assert progress.percent >= last
        last = progress.percent
        assert advance(d, first, at(offset), OK) == progress  # the clock alone decides


@given(decls, offsets, st.integers(0, 11), st.sampled_from(["OK", "INSUFFICIENT_DATA", "ALARM"]))
def test_once_aborted_always_aborted(
    d: ShiftDecl, times: list[float], fire_at: int, later: str
) -> None:
    """An alarm in ALARM at any cycle before completion gives 0 % from that cycle on, whatever
    follows; a completed shift no longer watches its alarms."""
    progress = advance(d, None, T0, Signals({"a": "OK"}, True))
    for n, offset in enumerate(times):
        state = "ALARM" if n == fire_at else later if n > fire_at else "OK"
        before = progress
        progress = advance(d, progress, at(offset), Signals({"a": state}, True))
        if before.verdict == "completed":
            assert progress == before
        elif n >= fire_at:
            assert progress.verdict == "aborted" and progress.percent == 0
            assert n == fire_at or progress == before
        else:
            assert progress.verdict in ("shifting", "completed")


@given(st.integers(0, 100), st.integers(0, 2_000_000))
def test_pair_weights_split_exactly(percent: int, total: int) -> None:
    """At the exact scale the new color's share is exactly ``percent`` % of the pair's total,
    the two add up to the scaled total, and 0 % / 100 % need no scaling at all."""
    scale = exact_scale(percent, total)
    new, old = pair_weights(percent, total, scale)
    assert new + old == total * scale <= MAX_ROUTE_WEIGHT_SUM
    assert new * 100 == percent * total * scale
    if percent in (0, 100):
        assert scale == 1


@pytest.mark.parametrize(("seconds", "text"), [(4, "4s"), (300, "5m"), (7200, "2h"), (90, "90s")])
def test_every_is_written_in_the_largest_whole_unit(seconds: int, text: str) -> None:
    """The canonical declaration writes 300 s as 5m, so 'every=300s' and 'every=5m' are one."""
    assert format_every(seconds) == text
