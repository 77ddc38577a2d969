"""``nightjar import-appmesh``: App Mesh definitions -> Cloud Map ``service-settings``.

Reads the live App Mesh API (``--mesh``) or files (``--from``), prints the plan and every App
Mesh feature that does not survive, and with ``--apply`` registers the settings in Cloud Map.
The plan is checked with the configurator's own conventions before anything is printed as
importable, so what it registers is what a cycle accepts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from botocore.config import Config

from nightjar_cli.appmesh import ANCHOR_ATTRIBUTES, ImportPlan, Loss, plan_import
from nightjar_cli.appmesh_apply import Change, CloudMapWriter, apply_plan, cloudformation
from nightjar_cli.appmesh_sources import read_from, read_live
from nightjar_cli.output import emit, table
from nightjar_cli.results import plain
from shared.aws import make_client
from shared.cli import expected_errors

STRICT_EXIT = 3  # --strict and something cannot be expressed


def check_plan(plan: ImportPlan) -> ImportPlan:
    """The plan with every problem the configurator would report for it added as a loss."""
    from configurator.conventions import read_namespace  # base install: no template deps
    from configurator.discovery import RawInstance, RawNamespace, RawService
    from configurator.mesh import build_nodes

    losses = list(plan.losses)
    for namespace in sorted({item.namespace for item in plan.settings}):
        services = tuple(
            RawService(
                item.cloud_map_service,
                item.cloud_map_service,
                (RawInstance("service-settings", {**ANCHOR_ATTRIBUTES, **item.attributes}),),
            )
            for item in plan.settings
            if item.namespace == namespace
        )
        model, problems = read_namespace(RawNamespace(namespace, namespace, services))
        build_nodes(model, problems)
        losses.extend(Loss(p.where, p.item, f"nightjar reports: {p.reason}") for p in problems)
    return replace(plan, losses=tuple(losses))


def _settings_rows(plan: ImportPlan) -> list[dict[str, str]]:
    return [
        {
            "namespace": item.namespace,
            "cloud_map_service": item.cloud_map_service,
            "virtual_node": item.virtual_node,
            "key": key,
            "value": value,
        }
        for item in plan.settings
        for key, value in item.attributes.items()
    ]


def _print_plan(plan: ImportPlan, changes: list[Change] | None) -> None:
    click.echo(f"mesh {plan.mesh}: {len(plan.settings)} service-settings instance(s)")
    table(_settings_rows(plan), ["namespace", "cloud_map_service", "virtual_node", "key", "value"])
    if plan.losses:
        click.echo(f"\n{len(plan.losses)} App Mesh feature(s) cannot be expressed:")
        table(list(plan.losses), ["resource", "feature", "lost"])
    else:
        click.echo("\nnothing is lost.")
    if changes is not None:
        click.echo("")
        table(changes, ["namespace", "cloud_map_service", "action", "detail"])


def _read(mesh: str | None, source: Path | None) -> ImportPlan:
    if source is not None:
        return plan_import(read_from(source, mesh))
    if mesh is None:
        raise click.UsageError("give --mesh NAME (live App Mesh API) or --from PATH")
    client = make_client("appmesh", Config(retries={"max_attempts": 5, "mode": "standard"}))
    return plan_import(read_live(client, mesh))


def _apply(plan: ImportPlan, write: bool, force: bool) -> list[Change]:
    client = make_client("servicediscovery", Config(retries={"mode": "standard"}))
    return apply_plan(CloudMapWriter(client), plan, write, force)


@click.command("import-appmesh")
@click.option("--mesh", help="App Mesh mesh name (read live unless --from is given)")
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, path_type=Path),
    help="a directory of 'aws appmesh describe-*' JSON outputs, or a CloudFormation template",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "cloudformation"]),
    default="table",
    help="cloudformation: a template of AWS::ServiceDiscovery::Instance resources",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable plan")
@click.option("--strict", is_flag=True, help=f"exit {STRICT_EXIT} if any feature is lost")
@click.option("--apply", "do_apply", is_flag=True, help="register the settings in Cloud Map")
@click.option("--dry-run", is_flag=True, help="with --apply: compare with Cloud Map, write nothing")
@click.option("--force", is_flag=True, help="with --apply: replace settings that differ")
@expected_errors
def import_appmesh(
    mesh: str | None,
    source: Path | None,
    output_format: str,
    as_json: bool,
    strict: bool,
    do_apply: bool,
    dry_run: bool,
    force: bool,
) -> None:
    """Convert App Mesh definitions into nightjar's Cloud Map service-settings.

    Without --apply nothing is written: the plan and what is lost are printed.

    \b
    Examples:
      nightjar import-appmesh --mesh appmesh-demo
      nightjar import-appmesh --from mesh.yaml --format cloudformation > settings.json
      nightjar import-appmesh --mesh appmesh-demo --apply --dry-run
    """
    plan = check_plan(_read(mesh, source))
    lost = strict and bool(plan.losses)
    changes = _apply(plan, not dry_run, force) if do_apply and not lost else None
    if output_format == "cloudformation":
        click.echo(json.dumps(cloudformation(plan), indent=2))
        for loss in plan.losses:
            click.echo(f"lost: {loss.resource}: {loss.feature}: {loss.lost}", err=True)
    else:
        data: dict[str, Any] = {**plain(plan), "changes": plain(changes)}
        emit(data, as_json, lambda: _print_plan(plan, changes))
    if lost:
        click.echo(
            f"{len(plan.losses)} App Mesh feature(s) cannot be expressed (--strict);"
            " nothing was applied",
            err=True,
        )
        raise SystemExit(STRICT_EXIT)
    if changes and any(c.action in ("refused", "missing") for c in changes):
        raise click.ClickException("some service-settings were not written (see the table)")
