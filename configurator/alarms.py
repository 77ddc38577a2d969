"""Alarms: the states of the CloudWatch alarms that watch traffic shifts.

One cycle asks once for every alarm its active shifts name: one ``cloudwatch:DescribeAlarms``
request per 100 names (the API's limit), metric and composite alarms alike. An alarm that does
not exist is simply absent from the answer. If CloudWatch cannot answer (after botocore's
retries), ``AlarmReadError`` says why and the shifts that need alarms hold their step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from configurator.errors import AlarmReadError
from shared.aws import CONFIGURATOR, Patience, describe_aws_error, make_client

NAMES_PER_CALL = 100  # DescribeAlarms accepts at most 100 AlarmNames
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]


class AlarmSource(Protocol):
    """Where alarm states come from."""

    def states(self, names: Sequence[str]) -> dict[str, str]:
        """``name -> OK | ALARM | INSUFFICIENT_DATA`` for each named alarm that exists;
        AlarmReadError when the states cannot be read."""


class StaticAlarms:
    """Alarm states held in memory (tests, and a configurator built without CloudWatch)."""

    def __init__(self, states: dict[str, str] | None = None, error: str = "") -> None:
        self.alarms = dict(states or {})
        self.error = error
        self.asked: list[list[str]] = []

    def states(self, names: Sequence[str]) -> dict[str, str]:
        self.asked.append(list(names))
        if self.error:
            raise AlarmReadError(self.error)
        return {name: self.alarms[name] for name in names if name in self.alarms}


def make_cloudwatch_client(patience: Patience = CONFIGURATOR) -> Any:
    """A CloudWatch client from the standard AWS environment (AWS_ENDPOINT_URL included)."""
    return make_client("cloudwatch", patience.config())


class CloudWatchAlarms:
    """Reads alarm states through an injected boto3 CloudWatch client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def states(self, names: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        wanted = sorted(set(names))
        for first in range(0, len(wanted), NAMES_PER_CALL):
            found.update(self._batch(wanted[first : first + NAMES_PER_CALL]))
        return found

    def _batch(self, names: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            page = self._call(names, token)
            for kind in ("MetricAlarms", "CompositeAlarms"):
                for alarm in page.get(kind, []):
                    found[str(alarm["AlarmName"])] = str(alarm["StateValue"])
            token = page.get("NextToken")
            if not token:
                return found

    def _call(self, names: list[str], token: str | None) -> Any:
        try:
            return self.client.describe_alarms(
                AlarmNames=names,
                AlarmTypes=ALARM_TYPES,
                MaxRecords=NAMES_PER_CALL,
                **({"NextToken": token} if token else {}),
            )
        except (ClientError, BotoCoreError) as err:
            raise AlarmReadError(
                f"CloudWatch DescribeAlarms failed: {describe_aws_error(err)}"
            ) from err
