"""Traffic shifts as a client sees them: ``nightjar-configurator run`` (a real process, 1 s
cycles) on moto's HTTP server (Cloud Map, S3, CloudWatch), a fetcher running a real Envoy
gateway, and HTTP probes through it to real loopback backends.

One mesh serves every test; each test shifts its own service (tuna, salmon, trout), blue ->
green, both declaring their path at blue 100 / green 0, and runs its own configurator.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.cloudmap import FISH, CloudMapService, Task, create_namespace, register
from sandbox.cloudwatch import create_alarm
from shared.models import ShiftState
from shared.s3_store import S3BundleStore
from tests.backends import Backend, Behaviour
from tests.cloudmap import update_settings
from tests.mesh_harness import (
    BIN,
    ConfiguratorProcess,
    EnvoyNode,
    client,
    configurator,
    moto_endpoint,
    process_env,
    publish,
)
from tests.waiting import wait_for

BUCKET = "shifts"
SERVICES = ("tuna", "salmon", "trout")
BATCH = 50
FAST = Behaviour(one_write=True)  # ~1 ms per request through Envoy: thousands per step


class ShiftMesh(EnvoyNode):
    """The gateway Envoy, the backends, Cloud Map ids, the store and CloudWatch."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        super().__init__(endpoint, BUCKET, f"{FISH}/gateway", workdir)
        self.cloudmap: Any = client("servicediscovery", endpoint)
        self.cloudwatch: Any = client("cloudwatch", endpoint)
        self.backends: dict[str, Backend] = {}
        self.ids: dict[str, str] = {}
        self.first = configurator(endpoint, [FISH], BUCKET)  # creates the bucket
        self.store = S3BundleStore(client("s3", endpoint), BUCKET, "nightjar")
        self._indexes: dict[str, Any] = {}

    def register_all(self) -> None:
        ns_id = create_namespace(self.cloudmap)
        for name in SERVICES:
            for color in ("blue", "green"):
                backend = Backend(f"{name}-{color}", FAST)
                self.backends[f"{name}-{color}"] = backend
                svc = CloudMapService(
                    f"{name}-{color}",
                    self.settings(name, color),
                    [Task("127.0.0.1", str(backend.port))],
                )
                self.ids[f"{name}-{color}"] = register(self.cloudmap, ns_id, svc)

    @staticmethod
    def settings(name: str, color: str) -> dict[str, str]:
        weight = "100" if color == "blue" else "0"
        return {"SERVICE": name, "COLOR": color, f"/{name}": weight}

    def declare(self, name: str, shift: str) -> None:
        update_settings(
            self.cloudmap,
            self.ids[f"{name}-green"],
            {**self.settings(name, "green"), "SHIFT": shift},
        )

    def configurator_process(self, name: str) -> ConfiguratorProcess:
        return ConfiguratorProcess(self.endpoint, BUCKET, [FISH], self.workdir / f"{name}.log")

    def nightjar(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "nightjar"), *args],
            env=process_env(self.endpoint, BUCKET),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # -- what the store says --------------------------------------------------------------
    def index(self, version: str) -> Any:
        if version not in self._indexes:
            self._indexes[version] = self.store.get_index(version)
        return self._indexes[version]

    def shift(self, version: str | None, name: str) -> ShiftState | None:
        return None if version is None else self.index(version).shifts.get(f"{FISH}/{name}")

    def current(self) -> str:
        read = self.store.read_manifest()
        assert read is not None
        return read.manifest.version

    def stop(self) -> None:
        super().stop()
        for backend in self.backends.values():
            backend.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShiftMesh]:
    with moto_endpoint() as endpoint:
        m = ShiftMesh(endpoint, tmp_path_factory.mktemp("shifts"))
        try:
            m.register_all()
            version = publish(m.first)
            m.start()
            m.wait_serving(version)
            yield m
        finally:
            m.stop()


@pytest.fixture
def running(mesh: ShiftMesh, request: pytest.FixtureRequest) -> Iterator[ConfiguratorProcess]:
    """A configurator process for one test, stopped after it."""
    process = mesh.configurator_process(request.node.name)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Segment:
    """Answers seen while Envoy served one percentage for the new color."""

    percent: int | None
    seen: Counter[str] = field(default_factory=Counter)

    def share(self, name: str) -> float:
        return 100 * self.seen[f"{name}-green"] / sum(self.seen.values())


def probe(
    mesh: ShiftMesh,
    name: str,
    done: Callable[[list[Segment]], bool],
    timeout: float,
    everything: Counter[str] | None = None,
) -> list[Segment]:
    """Requests in batches of 50 until ``done``; each batch is attributed to the new color's
    percentage in the version the gateway applied before and after it (a batch during which
    a new version was applied is dropped, and so is the batch before a new version is first
    seen: the fetcher logs the swap once Envoy confirmed it, so that batch may straddle).
    ``everything`` counts every answer, dropped batches included."""
    segments: list[Segment] = []
    last: str | None = None
    previous: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    while not done(segments):
        assert time.monotonic() < deadline, f"timed out; seen {segments}"
        before = mesh.latest()
        batch = mesh.answers(f"/{name}", BATCH)
        if everything is not None:
            everything.update(batch)
        if mesh.latest() != before:
            continue
        if before != last:
            if segments and segments[-1].seen.total() >= BATCH:
                segments[-1].seen.subtract(previous)
            last = before
            state = mesh.shift(before, name)
            percent = None if state is None else state.percent
            if not segments or segments[-1].percent != percent:
                segments.append(Segment(percent))
        segments[-1].seen.update(batch)
        previous = batch
        time.sleep(0.05)  # leave the two CPUs to the configurator and Envoy too
    return [s for s in segments if s.seen.total() > 0]


def measured(segments: list[Segment], minimum: int = 200) -> list[Segment]:
    return [s for s in segments if s.percent is not None and s.seen.total() >= minimum]


def test_green_share_passes_25_50_100_in_order_and_finish_changes_nothing(
    mesh: ShiftMesh, running: ConfiguratorProcess
) -> None:
    """SHIFT=from=blue steps=25,50,100 every=4s on tuna-green: through the gateway, green's
    share is ~25 %, then ~50 %, then 100 % (within 8 points, over at least 200 requests each);
    then 'nightjar shift finish tuna' writes green 100 / blue 0, removes SHIFT, and the next
    cycles publish nothing while green keeps all traffic."""
    mesh.declare("tuna", "from=blue steps=25,50,100 every=4s")

    def completed(segments: list[Segment]) -> bool:
        return any(s.percent == 100 and s.seen.total() >= 400 for s in segments)

    everything: Counter[str] = Counter()
    segments = measured(probe(mesh, "tuna", completed, timeout=60, everything=everything))
    assert [s.percent for s in segments] == [25, 50, 100], segments
    assert set(everything) == {"tuna-blue", "tuna-green"}, everything  # no request failed
    for segment in segments:
        assert abs(segment.share("tuna") - (segment.percent or 0)) <= 8, segment
        assert set(segment.seen) <= {"tuna-blue", "tuna-green"}, segment

    done = json.loads(mesh.nightjar("shift", "finish", "tuna", "--json"))
    assert done["weights"] == {"blue": {"/tuna": 0}, "green": {"/tuna": 100}}
    version, cycles = mesh.current(), len(running.events("cycle.done"))
    wait_for(lambda: len(running.events("cycle.done")) >= cycles + 3, 30, "three more cycles")
    assert mesh.current() == version
    after = running.events("cycle.done")[cycles:]
    assert {e["outcome"] for e in after} == {"unchanged"}, after
    assert mesh.answers("/tuna", 200) == Counter({"tuna-green": 200})


def test_an_alarm_aborts_within_three_cycles_and_the_abort_stays(
    mesh: ShiftMesh, running: ConfiguratorProcess
) -> None:
    """salmon shifting at 50 % watched by alarm salmon-5xx: set to ALARM (moto's
    set_alarm_state), a version giving green 0 % is published within 3 cycles and Envoy sends
    green nothing; back to OK, green stays at 0 %; 'nightjar shift status --json' says
    aborted and names the alarm."""
    create_alarm(mesh.cloudwatch, "salmon-5xx", "OK")
    mesh.nightjar(
        "shift", "start", "salmon", "--to", "green", "--steps", "50,100", "--every", "1h",
        "--alarm", "salmon-5xx",
    )  # fmt: skip

    def half(segments: list[Segment]) -> bool:
        return any(s.percent == 50 and s.seen.total() >= 200 for s in segments)

    (shifting,) = measured(probe(mesh, "salmon", half, timeout=30))
    assert abs(shifting.share("salmon") - 50) <= 8, shifting

    before = len(running.events("cycle.done"))
    mesh.cloudwatch.set_alarm_state(AlarmName="salmon-5xx", StateValue="ALARM", StateReason="t")

    def aborted_version() -> str | None:
        for event in running.events("cycle.done")[before:]:
            state = mesh.shift(event.get("version"), "salmon")
            if event["outcome"] == "published" and state and state.verdict == "aborted":
                return str(event["version"])
        return None

    wait_for(lambda: aborted_version() is not None, 30, "a version with salmon aborted")
    cycles = [e["version"] for e in running.events("cycle.done")[before:]]
    assert cycles.index(aborted_version()) < 3, cycles
    wait_for(lambda: mesh.serving(str(aborted_version())), 30, "the gateway serving it")
    assert mesh.answers("/salmon", 200) == Counter({"salmon-blue": 200})

    mesh.cloudwatch.set_alarm_state(AlarmName="salmon-5xx", StateValue="OK", StateReason="ok")
    cleared = len(running.events("cycle.done"))
    wait_for(lambda: len(running.events("cycle.done")) >= cleared + 3, 30, "three more cycles")
    assert mesh.answers("/salmon", 200) == Counter({"salmon-blue": 200})
    status = json.loads(mesh.nightjar("shift", "status", "salmon", "--json"))
    (shift,) = status["shifts"]
    assert shift["verdict"] == "aborted" and shift["abort_cause"] == "alarm"
    assert "salmon-5xx" in shift["abort_reason"]


def test_a_killed_configurator_resumes_at_the_step_the_clock_says(
    mesh: ShiftMesh, running: ConfiguratorProcess
) -> None:
    """trout: SHIFT without start= (the first cycle records it). The configurator is killed
    (SIGKILL) during step 1 and restarted once the clock says step 3: its first version
    keeps the recorded start and serves the clock's step (step 2, 40 %, is skipped), and
    Envoy's split follows it."""
    every = 6
    mesh.declare("trout", f"from=blue steps=20,40,60,100 every={every}s")

    def shifting_version() -> str | None:
        for event in running.events("cycle.done"):
            state = mesh.shift(event.get("version"), "trout")
            if event["outcome"] == "published" and state is not None:
                return str(event["version"])
        return None

    wait_for(lambda: shifting_version() is not None, 30, "trout's shift published")
    recorded = mesh.shift(shifting_version(), "trout")
    assert recorded is not None and recorded.step == 0
    running.kill()
    killed_at = mesh.current()
    assert mesh.shift(killed_at, "trout") == recorded
    wait_for(
        lambda: datetime.now(UTC) >= recorded.start + timedelta(seconds=2 * every + 0.5),
        3 * every,
        "the clock to reach step 3",
    )
    assert mesh.current() == killed_at  # nothing published while it was down
    running.start()

    def resumed() -> ShiftState | None:
        version = mesh.current()
        return None if version == killed_at else mesh.shift(version, "trout")

    wait_for(lambda: resumed() is not None, 30, "a version after the restart")
    state = resumed()
    assert state is not None and state.start == recorded.start
    created = mesh.index(mesh.current()).created
    clock_step = min(int((created - state.start).total_seconds() // every), 3)
    assert state.step == clock_step >= 2, state
    assert state.percent == [20, 40, 60, 100][clock_step]

    def served(segments: list[Segment]) -> bool:
        return any((s.percent or 0) >= 60 and s.seen.total() >= 200 for s in segments)

    later = [s for s in measured(probe(mesh, "trout", served, timeout=30)) if s.percent != 20]
    assert later and all((s.percent or 0) >= 60 for s in later), later
    for segment in later:
        assert abs(segment.share("trout") - (segment.percent or 0)) <= 8, segment
