"""``nightjar shift`` against in-process moto (S3, Cloud Map, CloudWatch) with configurator
cycles in between: what it writes to Cloud Map, what it reads from the store, and that
``finish`` leaves nothing for the next cycle to publish."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result
from moto import mock_aws

from configurator.alarms import CloudWatchAlarms
from configurator.cycle import Configurator
from configurator.discovery import CloudMapDiscovery
from configurator.render import TemplateLibrary
from configurator.report import CycleReport
from configurator.validate import EnvoyValidator
from nightjar_cli.cli import main
from sandbox.cloudwatch import create_alarm
from sandbox.moto import registration_replaces
from shared.s3_store import S3BundleStore
from tests.cloudmap import FISH, CloudMapService, Task, create_namespace, register
from tests.conftest import BUCKET

BLUE = {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "60", "[private]/tuna/admin": "1"}
GREEN = {"SERVICE": "tuna", "COLOR": "green", "?/tuna": "40", "HTTP2": "yes", "TIMEOUT": "2s"}


@dataclass
class Mesh:
    configurator: Configurator
    cloudmap: Any
    cloudwatch: Any
    ids: dict[str, str]
    offset: list[timedelta] = field(default_factory=lambda: [timedelta()])

    def cycle(self, after: float = 0) -> CycleReport:
        """One configurator cycle ``after`` seconds later than the last one."""
        self.offset[0] += timedelta(seconds=after)
        report = self.configurator.run_cycle()
        assert report.outcome in ("published", "unchanged"), report.error
        return report

    def settings(self, service: str) -> dict[str, str]:
        got = self.cloudmap.get_instance(ServiceId=self.ids[service], InstanceId="service-settings")
        return dict(got["Instance"]["Attributes"])


def nj(*args: str) -> Result:
    return CliRunner().invoke(main, ["--bucket", BUCKET, *args])


def nj_json(*args: str) -> Any:
    result = nj(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    """tuna blue 60 / green 40 on /tuna (green declares it private), one task each; salmon."""
    with mock_aws(), registration_replaces():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        cloudmap = boto3.client("servicediscovery")
        cloudwatch = boto3.client("cloudwatch")
        ns_id = create_namespace(cloudmap)
        ids = {
            name: register(cloudmap, ns_id, CloudMapService(name, attrs, [Task("10.0.0.1", "80")]))
            for name, attrs in (
                ("tuna-blue", BLUE),
                ("tuna-green", GREEN),
                ("salmon-blue", {"SERVICE": "salmon", "COLOR": "blue", "/salmon": "1"}),
            )
        }
        offset = [timedelta()]
        configurator = Configurator(
            namespaces=[FISH],
            store=S3BundleStore(s3, BUCKET, "nightjar"),
            discovery=CloudMapDiscovery(cloudmap),
            templates=TemplateLibrary.from_dir(),
            validator=EnvoyValidator(None),
            clock=lambda: datetime.now(UTC) + offset[0],
            alarms=CloudWatchAlarms(cloudwatch),
        )
        m = Mesh(configurator, cloudmap, cloudwatch, ids, offset)
        m.cycle()
        yield m


def tuna_weights(mesh: Mesh) -> dict[str, int]:
    """What a sidecar's /tuna route sends to each cluster, from the published files (green
    declares /tuna private, so the route is private and the gateway blocks it)."""
    store = mesh.configurator.store
    read = store.read_manifest()
    assert read is not None
    index = store.get_index(read.manifest.version)
    files = index.files_of(f"{FISH}/salmon/blue")
    assert files is not None
    lds = store.get_object(files["lds.yaml"].sha256).decode()
    (listener,) = yaml.safe_load(lds)["resources"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    (tuna,) = [r for r in routes if r["match"].get("prefix") == "/tuna"]
    if "cluster" in tuna["route"]:
        return {tuna["route"]["cluster"]: 1}
    return {c["name"]: c["weight"] for c in tuna["route"]["weighted_clusters"]["clusters"]}


def test_start_writes_shift_with_start_now_and_keeps_the_other_attributes(mesh: Mesh) -> None:
    """start: SHIFT=from=blue steps=... every=... alarms=... start=<now> on green only; every
    other attribute of green is written back; --json shows the schedule."""
    create_alarm(mesh.cloudwatch, "tuna-5xx")
    before = datetime.now(UTC).replace(microsecond=0)
    out = nj_json(
        "shift", "start", "tuna", "--to", "green", "--steps", "10,50,100", "--every", "5m",
        "--alarm", "tuna-5xx",
    )  # fmt: skip
    green = mesh.settings("tuna-green")
    shift = green.pop("SHIFT")
    assert shift.startswith("from=blue steps=10,50,100 every=5m alarms=tuna-5xx start=")
    start = datetime.fromisoformat(shift.rsplit("start=", 1)[1])
    assert before <= start <= datetime.now(UTC)
    assert green == {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "1", **GREEN}
    assert mesh.settings("tuna-blue") == {
        "AWS_INSTANCE_IPV4": "127.0.0.1",
        "AWS_INSTANCE_PORT": "1",
        **BLUE,
    }
    assert [(s["step"], s["percent"]) for s in out["schedule"]] == [(1, 10), (2, 50), (3, 100)]
    assert out["from_color"] == "blue" and out["shift"] == shift


def test_status_shows_step_split_and_next_step(mesh: Mesh) -> None:
    """After a cycle, status --json: shifting at step 1 of 3, green 10 % of the pair's 100,
    the next step 5 minutes after the start; the gateway serves exactly that split."""
    nj("shift", "start", "tuna", "--to", "green", "--steps", "10,50,100", "--every", "5m")
    mesh.cycle()
    (shift,) = nj_json("shift", "status")["shifts"]
    assert (shift["verdict"], shift["step"], shift["percent"]) == ("shifting", 0, 10)
    assert shift["routes"] == {"/tuna": {"green": 10, "blue": 90}}
    start = datetime.fromisoformat(shift["start"])
    assert datetime.fromisoformat(shift["next_step_at"]) == start + timedelta(minutes=5)
    assert tuna_weights(mesh) == {"tuna/blue": 90, "tuna/green": 10}
    human = nj("shift", "status")
    assert "shifting" in human.stdout and "tuna /tuna: green 10  blue 90" in human.stdout


def test_abort_sends_everything_back_and_stays(mesh: Mesh) -> None:
    """abort adds abort=<now>; the next cycle gives blue 100 % (of the pair) and status names
    the operator; later cycles keep it."""
    nj("shift", "start", "tuna", "--to", "green", "--steps", "10,50,100", "--every", "1m")
    mesh.cycle(after=61)
    assert tuna_weights(mesh) == {"tuna/blue": 50, "tuna/green": 50}
    result = nj("shift", "abort", "tuna")
    assert result.exit_code == 0, result.output
    assert " abort=" in mesh.settings("tuna-green")["SHIFT"]
    assert mesh.cycle().outcome == "published"
    (shift,) = nj_json("shift", "status")["shifts"]
    assert (shift["verdict"], shift["abort_cause"], shift["step"]) == ("aborted", "operator", 1)
    assert tuna_weights(mesh) == {"tuna/blue": 1}
    assert mesh.cycle(after=600).outcome == "unchanged"
    again = nj("shift", "abort", "tuna")
    assert again.exit_code == 0 and "already aborted" in again.stdout


def test_finish_after_completion_changes_nothing_on_the_next_cycle(mesh: Mesh) -> None:
    """Completed: finish writes green /tuna = 100 (the pair's former total), blue /tuna = 0,
    removes SHIFT, keeps every other key; the next cycle publishes nothing."""
    nj("shift", "start", "tuna", "--to", "green", "--steps", "50,100", "--every", "1m")
    mesh.cycle()
    early = nj("shift", "finish", "tuna")
    assert early.exit_code == 1 and "is shifting (step 1 of 2" in early.output
    mesh.cycle(after=60)
    assert nj_json("shift", "status")["shifts"][0]["verdict"] == "completed"
    served = tuna_weights(mesh)
    done = nj_json("shift", "finish", "tuna")
    assert done["weights"] == {"blue": {"/tuna": 0}, "green": {"?/tuna": 100}}
    green = mesh.settings("tuna-green")
    assert "SHIFT" not in green and green["?/tuna"] == "100" and green["TIMEOUT"] == "2s"
    blue = mesh.settings("tuna-blue")
    assert blue["/tuna"] == "0" and blue["[private]/tuna/admin"] == "1"
    report = mesh.cycle(after=1)
    assert report.outcome == "unchanged" and report.shifts == []
    assert tuna_weights(mesh) == served == {"tuna/green": 1}
    assert nj_json("shift", "status")["shifts"][0]["verdict"] == "completed"  # still recorded


def test_finish_after_an_abort_makes_the_rollback_permanent(mesh: Mesh) -> None:
    """Aborted: finish writes blue the pair's total and green 0; the next cycle is unchanged."""
    nj("shift", "start", "tuna", "--to", "green", "--steps", "50,100", "--every", "1m")
    mesh.cycle()
    nj("shift", "abort", "tuna")
    mesh.cycle()
    done = nj_json("shift", "finish", "tuna")
    assert done["weights"] == {"blue": {"/tuna": 100}, "green": {"?/tuna": 0}}
    assert mesh.cycle(after=1).outcome == "unchanged"


def test_an_invalid_declaration_is_a_problem_and_changes_nothing(mesh: Mesh) -> None:
    """SHIFT with steps not ending in 100: 'nightjar problems' and 'shift status' name it and
    the accepted form; the split stays the declared 60/40 and no shift is recorded."""
    before = tuna_weights(mesh)
    mesh.cloudmap.register_instance(
        ServiceId=mesh.ids["tuna-green"],
        InstanceId="service-settings",
        Attributes={**mesh.settings("tuna-green"), "SHIFT": "from=blue steps=10,50 every=5m"},
    )
    mesh.cycle()
    (problem,) = [p for p in nj_json("problems") if "SHIFT" in p["item"]]
    assert problem["item"] == "attribute 'SHIFT' = 'from=blue steps=10,50 every=5m'"
    assert "end with 100" in problem["reason"] and "accepted form" in problem["reason"]
    status = nj_json("shift", "status")
    assert status["shifts"] == [] and status["problems"] == [problem]
    assert tuna_weights(mesh) == before == {"tuna/blue": 60, "tuna/green": 40}


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["start", "tuna", "--to", "green", "--steps", "10,50", "--every", "5m"], 2,
         "end with 100"),
        (["start", "tuna", "--to", "green", "--steps", "50,100", "--every", "5"], 2, "every='5'"),
        (["start", "tuna", "--to", "red", "--steps", "100", "--every", "5m"], 1,
         "no color 'red'"),
        (
            ["start", "tuna", "--to", "green", "--from", "green", "--steps", "100", "--every",
             "1s"],
            2,
            "the same color",
        ),
        (["start", "cod", "--to", "green", "--steps", "100", "--every", "5m"], 1, "SERVICE=cod"),
        (["abort", "tuna"], 1, "no color of tuna declares SHIFT"),
        (["finish", "salmon"], 1, "no color of salmon declares SHIFT"),
        (["start", "tuna", "--to", "green", "--steps", "100", "--every", "1s", "--namespace", "x"],
         1, "no namespace 'x'"),
    ],
)  # fmt: skip
def test_mistakes_are_one_sentence_and_write_nothing(
    mesh: Mesh, args: list[str], code: int, says: str
) -> None:
    """Each mistake exits 1 (runtime) or 2 (usage) with what to do; Cloud Map is unchanged."""
    before = mesh.settings("tuna-green")
    result = nj("shift", *args)
    assert result.exit_code == code, result.output
    assert says in result.output and "Traceback" not in result.output
    assert mesh.settings("tuna-green") == before


@pytest.mark.parametrize("command", ["start", "status", "abort", "finish"])
def test_every_shift_command_has_help_with_an_example(command: str) -> None:
    """--help works without AWS and shows an example."""
    result = CliRunner().invoke(main, ["shift", command, "--help"])
    assert result.exit_code == 0 and "Example" in result.stdout
