"""What AWS a process really calls, and whether an IAM policy allows exactly that.

``record_calls`` hooks every botocore client created while it runs (``shared.aws`` builds each
on a botocore session of its own at the entry points), so each API call reports its parameters.
``iam_requests`` turns a call into the IAM requests AWS authorizes (action, resource, condition
context); an operation it does not know is an error, so a new API call in the code fails the
IAM test until the mapping and the policies say how it is allowed. ``allows`` is a small policy
evaluator (Allow statements, wildcards, StringEquals/StringLike), enough for deploy/iam/*.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import botocore.session
import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account


@dataclass(frozen=True)
class Call:
    """One API call: the botocore service name, operation and parameters."""

    service: str
    operation: str
    params: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class IamRequest:
    """One authorization AWS performs for a call."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


@contextmanager
def record_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Call]]:
    """Every call made through botocore clients created while the block runs."""
    calls: list[Call] = []
    create_client = botocore.session.Session.create_client

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append(Call(model.service_model.service_name, model.name, dict(params)))

    def noted_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", note)
        return client

    with monkeypatch.context() as patch:
        patch.setattr(botocore.session.Session, "create_client", noted_client)
        yield calls


def _object(action: str) -> Any:
    return lambda p: [IamRequest(action, f"arn:aws:s3:::{p['Bucket']}/{p['Key']}")]


def _deleted(p: dict[str, Any]) -> list[IamRequest]:
    keys = [item["Key"] for item in p["Delete"]["Objects"]]
    return [IamRequest("s3:DeleteObject", f"arn:aws:s3:::{p['Bucket']}/{key}") for key in keys]


def _listed(p: dict[str, Any]) -> list[IamRequest]:
    context = (("s3:prefix", p.get("Prefix", "")),)
    return [IamRequest("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", context)]


def _namespace(p: dict[str, Any]) -> list[IamRequest]:
    arn = f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:namespace/{p['Id']}"
    return [IamRequest("servicediscovery:GetNamespace", arn)]


def _discovered(p: dict[str, Any]) -> list[IamRequest]:
    context = (
        ("servicediscovery:NamespaceName", p["NamespaceName"]),
        ("servicediscovery:ServiceName", p["ServiceName"]),
    )
    return [IamRequest("servicediscovery:DiscoverInstances", "*", context)]


def _service(action: str) -> Any:
    def requests(p: dict[str, Any]) -> list[IamRequest]:
        arn = f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:service/{p['ServiceId']}"
        return [IamRequest(action, arn)]

    return requests


def _registered(p: dict[str, Any]) -> list[IamRequest]:
    """RegisterInstance, and the Route 53 actions Cloud Map performs with the caller's
    permissions to update the DNS records of a service in a DNS namespace (AWS's managed policy
    AWSCloudMapRegisterInstanceAccess grants the same ones)."""
    zone = "arn:aws:route53:::hostedzone/ZFISHZONE"
    return [
        *_service("servicediscovery:RegisterInstance")(p),
        IamRequest("route53:GetHostedZone", zone),
        IamRequest("route53:ChangeResourceRecordSets", zone),
        IamRequest("route53:ListHostedZonesByName", "*"),
    ]


def _alarms(p: dict[str, Any]) -> list[IamRequest]:
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
    return [IamRequest("cloudwatch:DescribeAlarms", arn + name) for name in p["AlarmNames"]]


# API operation -> the IAM requests it needs (API and IAM names differ: HeadObject is
# s3:GetObject, ListObjectsV2 is s3:ListBucket, DeleteObjects is one s3:DeleteObject per key).
IAM_OF_OPERATION: dict[tuple[str, str], Any] = {
    ("s3", "GetObject"): _object("s3:GetObject"),
    ("s3", "HeadObject"): _object("s3:GetObject"),
    ("s3", "PutObject"): _object("s3:PutObject"),
    ("s3", "DeleteObjects"): _deleted,
    ("s3", "ListObjectsV2"): _listed,
    ("servicediscovery", "ListNamespaces"): lambda p: [
        IamRequest("servicediscovery:ListNamespaces", "*")
    ],
    ("servicediscovery", "ListServices"): lambda p: [
        IamRequest("servicediscovery:ListServices", "*")
    ],
    ("servicediscovery", "GetNamespace"): _namespace,
    ("servicediscovery", "DiscoverInstances"): _discovered,
    ("servicediscovery", "GetInstance"): _service("servicediscovery:GetInstance"),
    ("servicediscovery", "RegisterInstance"): _registered,
    ("cloudwatch", "DescribeAlarms"): _alarms,
}


def iam_requests(calls: list[Call]) -> set[IamRequest]:
    """The IAM requests behind ``calls``; AssertionError for an operation not mapped yet."""
    unknown = {(c.service, c.operation) for c in calls} - set(IAM_OF_OPERATION)
    assert not unknown, f"the code calls {sorted(unknown)}: map it here and allow it in deploy/iam"
    return {r for c in calls for r in IAM_OF_OPERATION[(c.service, c.operation)](c.params)}


def substitute(text: str, values: dict[str, str]) -> str:
    """``${Name}`` placeholders (the CloudFormation ``!Sub`` form) replaced by ``values``."""
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def load_policy(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """A deploy/iam document with its placeholders filled (a list value fills a whole field)."""

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and re.fullmatch(r"\$\{[^}]+\}", node):
            value = values[node[2:-1]]
            return value if isinstance(value, list) else str(value)
        if isinstance(node, str):
            return substitute(node, {k: str(v) for k, v in values.items()})
        return node

    document: dict[str, Any] = fill(json.loads(path.read_text()))
    return document


def _listed_values(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _conditions_hold(statement: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in statement.get("Condition", {}).items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            values = _listed_values(wanted)
            if operator == "StringEquals" and context[key] not in values:
                return False
            if operator == "StringLike" and not any(fnmatchcase(context[key], v) for v in values):
                return False
            if operator not in ("StringEquals", "StringLike"):
                raise AssertionError(f"condition operator {operator} not evaluated here")
    return True


def allowing_statements(policy: dict[str, Any], request: IamRequest) -> list[str]:
    """Sids of the Allow statements that grant ``request``."""
    found = []
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = _listed_values(statement["Action"])
        resources = _listed_values(statement["Resource"])
        if (
            any(fnmatchcase(request.action, a) for a in actions)
            and any(fnmatchcase(request.resource, r) for r in resources)
            and _conditions_hold(statement, dict(request.context))
        ):
            found.append(str(statement.get("Sid", "")))
    return found


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action a policy allows, as written."""
    return {
        action
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in _listed_values(statement["Action"])
    }
