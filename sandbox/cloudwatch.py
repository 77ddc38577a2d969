"""CloudWatch alarms for the demo and the tests: nightjar reads alarm states only, so what an
alarm watches is a fixed, plausible load balancer metric."""

from __future__ import annotations

from typing import Any


def create_alarm(cloudwatch: Any, name: str, state: str | None = None) -> None:
    """Create alarm ``name`` on ``cloudwatch`` (a boto3 client); set it to ``state`` if given
    (a new alarm is ``INSUFFICIENT_DATA`` until then)."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    if state is not None:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set by nightjar")
