"""Traffic shifts through whole configurator cycles: alarms read once per cycle, progress
published with the version and read back (a restart resumes where the clock says), a frozen
manifest freezes shifts, signals (metrics, one log line per step or abort), hostile values."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from configurator.alarms import CloudWatchAlarms, StaticAlarms
from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.metrics import Metrics
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from nightjar_cli.operations import point_manifest
from sandbox.cloudwatch import create_alarm
from shared.memory_store import MemoryBundleStore
from shared.models import ShiftState
from tests.bundles import files_by_node
from tests.faults import RequestCounter
from tests.prometheus import parse, value

T0 = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
TASK = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})


def service(attributes: dict[str, str], tasks: bool = True) -> RawService:
    name = f"{attributes['SERVICE']}-{attributes['COLOR']}"
    instances = (RawInstance("service-settings", attributes), *((TASK,) if tasks else ()))
    return RawService(name, name, instances)


def namespace(*services: RawService) -> RawNamespace:
    return RawNamespace("ns-1", "fish", services)


def tuna(shift: str, blue: str = "1", green: str = "0") -> RawNamespace:
    return namespace(
        service({"SERVICE": "tuna", "COLOR": "blue", "/tuna": blue}),
        service({"SERVICE": "tuna", "COLOR": "green", "/tuna": green, "SHIFT": shift}),
    )


class Clocked:
    """A configurator on a fixed mesh and store whose clock a test moves."""

    def __init__(
        self,
        raw: RawNamespace,
        store: MemoryBundleStore | None = None,
        alarms: Any = None,
        now: datetime = T0,
    ) -> None:
        self.now = now
        self.store = store or MemoryBundleStore()
        self.discovery = StaticDiscovery([raw])
        self.metrics = Metrics()
        self.configurator = Configurator(
            namespaces=["fish"],
            store=self.store,
            discovery=self.discovery,
            templates=TemplateLibrary.from_dir(),
            validator=EnvoyValidator(None),
            metrics=self.metrics,
            clock=lambda: self.now,
            alarms=alarms,
        )

    def at(self, seconds: float) -> Any:
        self.now = T0 + timedelta(seconds=seconds)
        return self.configurator.run_cycle()

    def recorded(self) -> ShiftState:
        read = self.store.read_manifest()
        assert read is not None
        return self.store.get_index(read.manifest.version).shifts["fish/tuna"]


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("cloudwatch")
        for name in ("tuna-5xx", "salmon-5xx", "salmon-p99"):
            create_alarm(client, name)
        yield client


def test_one_describe_alarms_request_per_cycle_for_every_shift(cloudwatch: Any) -> None:
    """Two services shifting, three alarms: each cycle sends exactly one DescribeAlarms naming
    all three; an alarm set to ALARM (moto's set_alarm_state) aborts only the shift watching it."""
    raw = namespace(
        service({"SERVICE": "tuna", "COLOR": "blue", "/tuna": "1"}),
        service(
            {
                "SERVICE": "tuna",
                "COLOR": "green",
                "/tuna": "0",
                "SHIFT": "from=blue steps=50,100 every=1m alarms=tuna-5xx",
            }
        ),
        service({"SERVICE": "salmon", "COLOR": "blue", "/salmon": "1"}),
        service(
            {
                "SERVICE": "salmon",
                "COLOR": "green",
                "/salmon": "0",
                "SHIFT": "from=blue steps=50,100 every=1m alarms=salmon-5xx,salmon-p99",
            }
        ),
    )
    counter = RequestCounter(cloudwatch)
    mesh = Clocked(raw, alarms=CloudWatchAlarms(cloudwatch))
    for second in (0, 1, 2):
        mesh.at(second)
    assert counter.calls["DescribeAlarms"] == 3
    asked = [p for op, p in counter.params if op == "DescribeAlarms"]
    assert all(p["AlarmNames"] == ["salmon-5xx", "salmon-p99", "tuna-5xx"] for p in asked)
    cloudwatch.set_alarm_state(AlarmName="salmon-p99", StateValue="ALARM", StateReason="test")
    report = mesh.at(3)
    verdicts = {s.service: (s.verdict, s.abort_reason) for s in report.shifts}
    assert verdicts == {
        "salmon": ("aborted", "alarm 'salmon-p99' is in ALARM"),
        "tuna": ("shifting", None),
    }
    mesh.at(4)
    last = [p for op, p in counter.params if op == "DescribeAlarms"][-1]
    assert last["AlarmNames"] == ["tuna-5xx"]  # an aborted shift's alarms are not read again


def test_a_step_change_alone_publishes() -> None:
    """With both colors at weight 0 the files never change, yet each step is published (its
    state is what the next cycle resumes from); cycles within a step publish nothing."""
    mesh = Clocked(tuna("from=blue steps=25,50,100 every=10s", blue="0", green="0"))
    outcomes = [(mesh.at(s).outcome, mesh.recorded().step) for s in (0, 5, 10, 15, 20, 30)]
    assert outcomes == [
        ("published", 0),
        ("unchanged", 0),
        ("published", 1),
        ("unchanged", 1),
        ("published", 2),
        ("unchanged", 2),
    ]


def test_a_restarted_configurator_resumes_at_the_step_the_clock_says() -> None:
    """No start= declared: the first cycle records the start; a new configurator (another
    process, same store) 25 s later skips to step 3 (every=10s), from that recorded start."""
    raw = tuna("from=blue steps=10,20,30,100 every=10s")
    first = Clocked(raw)
    first.at(0)
    first.at(5)
    assert first.recorded().start == T0
    again = Clocked(raw, store=first.store)
    report = again.at(25)
    assert report.outcome == "published"
    state = again.recorded()
    assert (state.start, state.step, state.percent) == (T0, 2, 30)
    assert state.next_step_at == T0 + timedelta(seconds=30)


def test_a_frozen_manifest_freezes_shifts() -> None:
    """Frozen mid-shift: cycles publish nothing and the recorded step stays; after unfreeze
    the next cycle serves the step the clock says."""
    mesh = Clocked(tuna("from=blue steps=10,20,30,100 every=10s"))
    mesh.at(0)
    version = mesh.recorded()
    read = mesh.store.read_manifest()
    assert read is not None
    point_manifest(mesh.store, read.manifest.version, frozen=True, by="t", reason="r", now=T0)
    assert mesh.at(15).outcome == "frozen"
    assert mesh.recorded() == version
    point_manifest(mesh.store, read.manifest.version, frozen=False, by=None, reason=None, now=T0)
    mesh.at(21)
    assert mesh.recorded().step == 2


def test_unreadable_alarms_hold_the_shift_and_are_a_problem() -> None:
    """CloudWatch failing: the shift holds its step (no advance, no abort) and the cycle reports
    a problem; once readable, it continues where the clock says."""
    alarms = StaticAlarms({"tuna-5xx": "OK"})
    mesh = Clocked(tuna("from=blue steps=10,20,100 every=10s alarms=tuna-5xx"), alarms=alarms)
    mesh.at(0)
    alarms.error = "CloudWatch DescribeAlarms failed: ThrottlingException"
    report = mesh.at(12)
    assert mesh.recorded().step == 0
    (problem,) = [p for p in report.problems if p.where == "cloudwatch"]
    assert "ThrottlingException" in problem.reason and "hold their step" in problem.reason
    alarms.error = ""
    mesh.at(13)
    assert mesh.recorded().step == 1


def test_metrics_and_one_log_line_per_step_or_abort(caplog: pytest.LogCaptureFixture) -> None:
    """Step and share per color as gauges, aborts by reason; shift.step once per step and
    shift.aborted once, however many cycles run in between."""
    alarms = StaticAlarms({"tuna-5xx": "OK"})
    mesh = Clocked(tuna("from=blue steps=10,20,100 every=10s alarms=tuna-5xx"), alarms=alarms)
    with caplog.at_level(logging.INFO, logger="configurator.cycle"):
        for second in (0, 1, 2, 10, 11):
            mesh.at(second)
        text = mesh.metrics.render()
        assert (
            value_of(text, "nightjar_configurator_shift_step", namespace="fish", service="tuna")
            == 2
        )
        assert (
            value_of(
                text,
                "nightjar_configurator_shift_percent",
                namespace="fish",
                service="tuna",
                color="green",
            )
            == 20
        )
        assert (
            value_of(
                text,
                "nightjar_configurator_shift_percent",
                namespace="fish",
                service="tuna",
                color="blue",
            )
            == 80
        )
        alarms.alarms["tuna-5xx"] = "ALARM"
        for second in (12, 13, 14):
            mesh.at(second)
    text = mesh.metrics.render()
    assert value_of(text, "nightjar_configurator_shift_aborts_total", reason="alarm") == 1
    assert value_of(text, "nightjar_configurator_shift_aborts_total", reason="operator") == 0
    assert (
        value_of(text, "nightjar_configurator_shift_aborted", namespace="fish", service="tuna") == 1
    )
    lines = [(r.msg, getattr(r, "nj_fields", {})) for r in caplog.records]
    shift_lines = [(m, f["step"], f["percent"]) for m, f in lines if m.startswith("shift.")]
    assert shift_lines == [("shift.step", 1, 10), ("shift.step", 2, 20), ("shift.aborted", 2, 0)]
    aborted = next(f for m, f in lines if m == "shift.aborted")
    assert aborted["reason"] == "alarm 'tuna-5xx' is in ALARM" and aborted["cause"] == "alarm"


def value_of(text: str, name: str, **labels: str) -> float:
    return value(parse(text), name, **labels)


FRAGMENTS = [
    "from=", "blue", "green", "steps=", "every=", "alarms=", "start=", "abort=", "10", "100",
    "0", "-1", "4s", "5m", "1h", "0s", ",", " ", "=", "2026-11-21T11:00:00Z",
    "2026-13-01T00:00:00Z", '"', "{{x}}", "\n", "\x00", "é", "${NJ_ADMIN_PORT}",
]  # fmt: skip
hostile = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join), st.text(max_size=60)
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile, st.floats(0, 10_000, allow_nan=False))
def test_hostile_shift_values_never_break_a_cycle_nor_reach_a_template(
    text: str, later: float
) -> None:
    """Whatever SHIFT holds: cycles publish, a refused value is a problem naming SHIFT, the
    files hold none of its text, and a refused value leaves the declared weights."""
    mesh = Clocked(tuna(text, blue="3", green="1"))
    plain = Clocked(
        namespace(
            service({"SERVICE": "tuna", "COLOR": "blue", "/tuna": "3"}),
            service({"SERVICE": "tuna", "COLOR": "green", "/tuna": "1"}),
        )
    )
    for seconds in (0, later):
        report = mesh.at(seconds)
        assert report.outcome in ("published", "unchanged"), report.error
    plain.at(0)
    files = files_of(mesh.store)
    for node in files.values():
        for data in node.values():
            if len(text) >= 8 and "=" in text:  # no Envoy file holds such text
                assert text.encode() not in data
    refused = [p for p in report.problems if p.item.startswith("attribute 'SHIFT'")]
    if refused:
        assert "accepted form" in refused[0].reason and report.shifts == []
        assert files == files_of(plain.store)


def files_of(store: MemoryBundleStore) -> dict[str, dict[str, bytes]]:
    read = store.read_manifest()
    assert read is not None
    index = store.get_index(read.manifest.version)
    return {
        n: {f: store.get_object(e.sha256) for f, e in fs.items()}
        for n, fs in files_by_node(index).items()
    }
