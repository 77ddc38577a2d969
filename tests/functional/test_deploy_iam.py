"""The task role policies in deploy/iam allow exactly the AWS calls each process makes.

Each test runs one process's real entry point (the console script, as the image runs it) on
in-process moto, records every boto3 call it makes, and checks the policy both ways: every call
is allowed, and every action the policy grants was used. A new API call in the code, or a
permission nothing needs any more, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from sandbox.cloudwatch import create_alarm
from sandbox.moto import registration_replaces
from tests.aws_calls import (
    ACCOUNT,
    REGION,
    Call,
    IamRequest,
    allowing_statements,
    iam_requests,
    load_policy,
    policy_actions,
    record_calls,
)
from tests.cloudmap import FISH, create_namespace, fish_mesh, register, update_settings
from tests.conftest import BUCKET

IAM = Path(__file__).parents[2] / "deploy" / "iam"
PREFIX = "mesh/prod"
VALUES: dict[str, Any] = {
    "BucketName": BUCKET,
    "Prefix": PREFIX,
    "Namespaces": [FISH],
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
}
ENV = {"NJ_BUCKET": BUCKET, "NJ_PREFIX": PREFIX, "NJ_LOG_FORMAT": "json"}


def invoke(script: str, *args: str, **env: str) -> Result:
    """Run a console script of the package in-process; it must succeed."""
    (entry,) = entry_points(group="console_scripts", name=script)
    result = CliRunner().invoke(entry.load(), list(args), env={**ENV, **env})
    assert result.exit_code == 0, f"{script} {' '.join(args)}: {result.output}"
    return result


def policy(*names: str) -> dict[str, Any]:
    """The named deploy/iam documents, filled for this test, as one policy."""
    statements = [s for n in names for s in load_policy(IAM / n, VALUES)["Statement"]]
    return {"Version": "2012-10-17", "Statement": statements}


def assert_exactly_allowed(calls: list[Call], granted: dict[str, Any]) -> None:
    requests = iam_requests(calls)
    denied = sorted((r.action, r.resource) for r in requests if not allowing_statements(granted, r))
    assert denied == [], "calls the policy does not allow"
    unused = policy_actions(granted) - {r.action for r in requests}
    assert unused == set(), "actions the policy grants but the process never uses"


@pytest.fixture
def mesh() -> Iterator[dict[str, Any]]:
    """Moto S3 + Cloud Map with the fish mesh, and a CloudWatch alarm; setup clients are not
    recorded."""
    with mock_aws(), registration_replaces():
        setup = boto3.session.Session(region_name=REGION)
        setup.client("s3").create_bucket(Bucket=BUCKET)
        cloudmap = setup.client("servicediscovery")
        ns_id = create_namespace(cloudmap)
        ids = {svc.name: register(cloudmap, ns_id, svc) for svc in fish_mesh()}
        create_alarm(setup.client("cloudwatch"), "tuna-5xx")
        yield {"cloudmap": cloudmap, "ns_id": ns_id, "ids": ids}


SHIFT = "from=blue steps=50,100 every=1h alarms=tuna-5xx"


def publish(
    mesh: dict[str, Any], versions: int, namespace: str = FISH, shift: str = "", **env: str
) -> None:
    """Configurator cycles, each after a change of tuna-green's weight: one version each."""
    for n in range(versions):
        settings = {"SERVICE": "tuna", "COLOR": "green", "/tuna": str(10 + n)}
        settings |= {"SHIFT": shift} if shift else {}
        update_settings(mesh["cloudmap"], mesh["ids"]["tuna-green"], settings)
        invoke("nightjar-configurator", "once", "--namespace", namespace, **env)


def test_configurator_policy_allows_exactly_its_calls(
    mesh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cycles by name and by id:<id>, publishing, unchanged, and gc, with a traffic shift
    watching an alarm: all allowed, all used."""
    with record_calls(monkeypatch) as calls:
        # the second collects
        publish(mesh, 2, shift=SHIFT, NJ_KEEP_VERSIONS="1", NJ_GRACE_SECONDS="0")
        invoke("nightjar-configurator", "once", "--namespace", f"id:{mesh['ns_id']}")
    operations = {c.operation for c in calls}
    assert operations >= {"DiscoverInstances", "PutObject", "DeleteObjects", "DescribeAlarms"}
    assert_exactly_allowed(
        calls,
        policy("configurator-store.json", "configurator-cloudmap.json", "configurator-alarms.json"),
    )


def test_configurator_may_not_discover_other_namespaces() -> None:
    """DiscoverInstances is allowed only in the namespaces the stack names."""
    granted = policy("configurator-cloudmap.json")
    other = IamRequest(
        "servicediscovery:DiscoverInstances",
        "*",
        (("servicediscovery:NamespaceName", "other.local"), ("servicediscovery:ServiceName", "x")),
    )
    assert allowing_statements(granted, other) == []


def test_fetcher_policy_allows_exactly_its_calls(
    mesh: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fetcher applying a version and polling again needs s3:GetObject under the prefix."""
    publish(mesh, 2)
    node = ["--node", f"{FISH}/gateway", "--config-dir", str(tmp_path / "cfg")]
    with record_calls(monkeypatch) as calls:
        invoke("nightjar-fetcher", "once", *node)
        invoke("nightjar-fetcher", "once", *node)
    assert_exactly_allowed(calls, policy("fetcher.json"))
    outside = IamRequest("s3:GetObject", f"arn:aws:s3:::{BUCKET}/other/manifest.json")
    assert allowing_statements(policy("fetcher.json"), outside) == []


def test_operator_policy_allows_exactly_its_calls(
    mesh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inspecting, rolling back, freezing and gc: reads, the manifest write, deletes."""
    publish(mesh, 3)
    versions = json.loads(invoke("nightjar", "versions", "--json").output)
    oldest_kept = versions[1]["version"]  # newest first; gc with 2 kept deletes the third
    node = f"{FISH}/gateway"
    with record_calls(monkeypatch) as calls:
        invoke("nightjar", "gc", NJ_KEEP_VERSIONS="2", NJ_GRACE_SECONDS="0")
        for args in (
            ["status"],
            ["versions"],
            ["nodes"],
            ["show", node],
            ["diff", oldest_kept, "--node", node],
            ["problems"],
            ["rollback", oldest_kept, "--reason", "test"],
            ["unfreeze"],
            ["freeze", "--reason", "test"],
            ["unfreeze"],
        ):
            invoke("nightjar", *args)
    assert_exactly_allowed(calls, policy("operator.json"))
    writes = {c.params["Key"] for c in calls if c.operation == "PutObject"}
    markers = {k for k in writes if k.startswith(f"{PREFIX}/history/")}
    assert writes - markers == {f"{PREFIX}/manifest.json"}
    assert len(markers) == 1  # the rollback marked the version it left as once current


def test_operator_shift_policy_allows_exactly_the_shift_commands(
    mesh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """start, status, abort and finish of a shift (configurator cycles in between, not
    recorded): operator.json's store reads plus exactly operator-shift.json's Cloud Map reads
    and RegisterInstance (with the Route 53 actions Cloud Map performs for it)."""
    publish(mesh, 1)
    commands = [
        ["start", "tuna", "--to", "green", "--from", "blue", "--steps", "50,100", "--every", "1h",
         "--alarm", "tuna-5xx"],
        ["status"],
        ["abort", "tuna"],
        ["finish", "tuna"],
    ]  # fmt: skip
    calls: list[Call] = []
    for args in commands:
        with record_calls(monkeypatch) as made:
            invoke("nightjar", "shift", *args)
        calls += made
        invoke("nightjar-configurator", "once", "--namespace", FISH)
    assert {c.operation for c in calls} >= {"RegisterInstance", "GetInstance", "GetObject"}
    requests = iam_requests(calls)
    granted = policy("operator.json", "operator-shift.json")
    denied = sorted((r.action, r.resource) for r in requests if not allowing_statements(granted, r))
    assert denied == [], "calls the operator policies do not allow"
    cloud_map = [r for r in requests if not r.action.startswith("s3:")]
    assert {r.action for r in cloud_map} == policy_actions(policy("operator-shift.json"))
    assert all(allowing_statements(policy("operator-shift.json"), r) for r in cloud_map)
    assert not [c for c in calls if c.operation in ("PutObject", "DeleteObjects")]
