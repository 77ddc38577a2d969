"""``nightjar shift``: progressive delivery from the command line (docs/progressive-delivery.md).

``start``, ``abort`` and ``finish`` write the new color's ``SHIFT`` in Cloud Map (they need
Cloud Map access: deploy/iam/operator-shift.json); ``status`` reads the bundle store only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import wraps
from typing import Any

import click

from nightjar_cli import shift_ops as ops
from nightjar_cli.context import OperatorContext, store_options
from nightjar_cli.output import emit, table
from nightjar_cli.shift_cloudmap import CloudMapSettings
from shared.cli import expected_errors

JSON = click.option("--json", "as_json", is_flag=True, help="machine-readable output")
NAMESPACE = click.option(
    "--namespace", help="the Cloud Map namespace (default: the mesh's only one)"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _cloudmap() -> CloudMapSettings:
    from configurator.discovery import make_cloudmap_client  # only when a command writes

    return CloudMapSettings(make_cloudmap_client())


def _requests(fn: Any) -> Any:
    """A request the CLI cannot write as given is a usage error (exit 2), like a bad option."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ops.ShiftRequestError as err:
            raise click.UsageError(str(err)) from err

    return wrapper


@click.group("shift")
def shift() -> None:
    """Shift traffic from one color to another step by step, aborted by CloudWatch alarms.

    The configurator runs the schedule; these commands declare it in Cloud Map (SHIFT on the
    new color) and read its progress from the bundle store.

    \b
    Example:
      nightjar shift start tuna --to green --steps 10,25,50,100 --every 5m --alarm tuna-5xx
      nightjar shift status
    """


@shift.command()
@click.argument("service")
@click.option("--to", "to_color", required=True, help="the color traffic moves to")
@click.option("--from", "from_color", help="the color it leaves (default: the other one)")
@click.option("--steps", required=True, help="percentages for the new color, ending in 100")
@click.option("--every", required=True, help="time per step: <n>s, <n>m or <n>h")
@click.option("--alarm", "alarms", multiple=True, help="CloudWatch alarm that aborts (repeatable)")
@NAMESPACE
@JSON
@store_options
@click.pass_obj
@expected_errors
@_requests
def start(
    obj: OperatorContext,
    service: str,
    to_color: str,
    from_color: str | None,
    steps: str,
    every: str,
    alarms: tuple[str, ...],
    namespace: str | None,
    as_json: bool,
) -> None:
    """Declare a shift of SERVICE to --to, starting now.

    Writes SHIFT=from=<color> steps=... every=... [alarms=...] start=<now> into the new
    color's service-settings (its other attributes are kept); the configurator starts moving
    traffic on its next cycle. Starting again on the same color restarts the schedule.

    \b
    Examples:
      nightjar shift start tuna --to green --steps 10,25,50,100 --every 5m
      nightjar shift start tuna --to green --from blue --steps 50,100 --every 30s \\
          --alarm tuna-green-5xx --alarm tuna-green-p99
    """
    ns = ops.namespace_of(obj.store(), namespace)
    declared = ops.start(
        _cloudmap(),
        ns,
        service,
        to_color=to_color,
        from_color=from_color,
        steps=steps,
        every=every,
        alarms=alarms,
        now=_now(),
    )

    def human() -> None:
        click.echo(f"{ns}: {service}/{to_color} SHIFT={declared.shift}")
        table(declared.schedule, ["step", "percent", "at"])
        click.echo(
            "the configurator starts the shift on its next cycle (within NJ_INTERVAL);"
            " follow it with 'nightjar shift status'."
        )

    emit(declared, as_json, human)


@shift.command()
@click.argument("service", required=False)
@JSON
@store_options
@click.pass_obj
@expected_errors
def status(obj: OperatorContext, service: str | None, as_json: bool) -> None:
    """Every shift the current version records: step, split per route, next step, verdict.

    Verdicts: pending (before its start), shifting, completed, aborted (with the reason:
    the alarm in ALARM, no healthy endpoint, or an operator). Invalid SHIFT declarations
    and unknown alarms are listed as problems.

    \b
    Examples:
      nightjar shift status
      nightjar shift status tuna --json | jq -r '.shifts[0].verdict'
    """
    data = ops.status(obj.store(), service)

    def human() -> None:
        if not data.shifts:
            click.echo(f"no traffic shift in {data.version}")
        rows = [_row(s) for s in data.shifts]
        if rows:
            table(rows, ["service", "from", "to", "verdict", "step", "percent", "next_step_at"])
        for s in data.shifts:
            if s["abort_reason"]:
                click.echo(f"{s['service']}: aborted at {s['aborted_at']}: {s['abort_reason']}")
            for route, weights in s["routes"].items():
                split = "  ".join(f"{color} {w}" for color, w in weights.items())
                click.echo(f"{s['service']} {route}: {split}")
        for p in data.problems:
            click.echo(f"problem: {p['where']}: {p['item']}: {p['reason']}")

    emit(data, as_json, human)


def _row(s: dict[str, Any]) -> dict[str, Any]:
    step = "-" if s["step"] < 0 else f"{s['step'] + 1}/{len(s['steps'])}"
    return {
        "service": f"{s['namespace']}/{s['service']}",
        "from": s["from_color"],
        "to": s["to_color"],
        "verdict": s["verdict"],
        "step": step,
        "percent": s["percent"],
        "next_step_at": s["next_step_at"],
    }


@shift.command()
@click.argument("service")
@NAMESPACE
@JSON
@store_options
@click.pass_obj
@expected_errors
def abort(obj: OperatorContext, service: str, namespace: str | None, as_json: bool) -> None:
    """Send all of SERVICE's traffic back to the old color, and keep it there.

    Adds abort=<now> to the SHIFT; the configurator gives the old color 100 % on its next
    cycle. The shift stays aborted until its declaration changes ('nightjar shift start'
    again, or 'nightjar shift finish' to make the rollback permanent).

    \b
    Example:
      nightjar shift abort tuna
    """
    store = obj.store()
    ns = ops.namespace_of(store, namespace)
    declared, written = ops.abort(_cloudmap(), store, ns, service, _now())

    def human() -> None:
        if not written:
            click.echo(f"{service}/{declared.to_color}: already aborted (SHIFT={declared.shift})")
            return
        click.echo(f"{ns}: {service}/{declared.to_color} SHIFT={declared.shift}")
        click.echo(
            f"the configurator sends all of {service}'s shifted traffic to"
            f" {declared.from_color} on its next cycle (within NJ_INTERVAL)."
        )

    emit({**vars(declared), "written": written}, as_json, human)


@shift.command()
@click.argument("service")
@NAMESPACE
@JSON
@store_options
@click.pass_obj
@expected_errors
def finish(obj: OperatorContext, service: str, namespace: str | None, as_json: bool) -> None:
    """Make a completed (or aborted) shift of SERVICE permanent and remove its SHIFT.

    The weights the shift serves become the colors' route weights (after completion: the new
    color has each route's former total, the old one 0), so the next cycle publishes nothing.

    \b
    Example:
      nightjar shift finish tuna
    """
    store = obj.store()
    ns = ops.namespace_of(store, namespace)
    done = ops.finish(_cloudmap(), store, ns, service)

    def human() -> None:
        for color, weights in done.weights.items():
            said = ", ".join(f"{key}={weight}" for key, weight in weights.items()) or "-"
            click.echo(f"{service}/{color}: {said}")
        click.echo(
            f"removed SHIFT from {service}/{done.removed_from}; the {done.verdict} shift's"
            " weights are now the declared ones."
        )

    emit(done, as_json, human)
