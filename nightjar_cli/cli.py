"""``nightjar``: the operator CLI to inspect, compare, roll back and freeze bundles.

Human output is an aligned table (colour only on a terminal); ``--json`` is for scripts.
Expected failures are one sentence and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import click

from nightjar_cli import operations as ops
from nightjar_cli.appmesh_cli import import_appmesh
from nightjar_cli.context import OperatorContext, store_options
from nightjar_cli.errors import OperatorError
from nightjar_cli.offline import render, validate
from nightjar_cli.output import emit, table
from nightjar_cli.results import VersionRow, plain
from nightjar_cli.shift_cli import shift
from shared import __version__
from shared.cli import expected_errors


def _now() -> datetime:
    return datetime.now(UTC)


JSON = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


VERSION = click.option("--version", "version", help="a retained version (default: current)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar")
@click.option("--bucket", help="S3 bucket of the bundle store [NJ_BUCKET]")
@click.option("--prefix", help="key prefix in the bucket [NJ_PREFIX, default nightjar]")
@click.pass_context
def main(ctx: click.Context, bucket: str | None, prefix: str | None) -> None:
    """Inspect and steer the bundles the configurator published.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar status
    """
    ctx.obj = OperatorContext({"bucket": bucket, "prefix": prefix})


@main.command()
@JSON
@store_options
@click.pass_obj
@expected_errors
def status(obj: OperatorContext, as_json: bool) -> None:
    """Current version, its age, frozen state, node and problem counts.

    \b
    Example:
      nightjar status --json
    """
    data = ops.status(obj.store(), _now())

    def human() -> None:
        frozen = "no"
        if data.frozen:
            frozen = click.style(f"yes, by {data.frozen_by}: {data.frozen_reason}", fg="red")
        for key, value in [
            ("version", data.version),
            ("created", f"{data.created} ({timedelta(seconds=data.age_seconds)} ago)"),
            ("frozen", frozen),
            ("nodes", data.nodes),
            ("problems", data.problems),
            ("written by", data.generator),
        ]:
            click.echo(f"{key:<10}  {value}")

    emit(data, as_json, human)


@main.command()
@JSON
@store_options
@click.pass_obj
@expected_errors
def versions(obj: OperatorContext, as_json: bool) -> None:
    """Retained versions, newest first; '*' marks the current one, '!' one never current.

    A never-current version lost a publishing race (or its publisher stopped before the swap):
    GC deletes it first; do not roll back to it.

    \b
    Example:
      nightjar versions --json | jq -r '.[] | select(.current) | .version'
    """
    rows = ops.versions(obj.store())

    def human() -> None:
        shown = [{**plain(r), "": _version_mark(r)} for r in rows]
        table(shown, ["", "version", "created", "parent", "nodes", "changed_nodes"])

    emit(rows, as_json, human)


@main.command()
@VERSION
@JSON
@store_options
@click.pass_obj
@expected_errors
def nodes(obj: OperatorContext, version: str | None, as_json: bool) -> None:
    """Node ids of a version with their kind, file count and total size.

    \b
    Example:
      nightjar nodes --version 20261121T113600123456Z-3fa4c2d1
    """
    rows = ops.nodes(ops.load_index(obj.store(), version))
    emit(rows, as_json, lambda: table(rows, ["node", "kind", "files", "bytes"]))


@main.command()
@click.argument("node")
@VERSION
@click.option("--file", "file_name", help="only this file (e.g. lds.yaml)")
@store_options
@click.pass_obj
@expected_errors
def show(obj: OperatorContext, node: str, version: str | None, file_name: str | None) -> None:
    """Print a node's files exactly as published.

    \b
    Example:
      nightjar show fish.service.local/gateway --file lds.yaml
    """
    store = obj.store()
    files = ops.node_files(store, ops.load_index(store, version), node)
    if file_name is not None:
        if file_name not in files:
            raise OperatorError(f"{node} has no file {file_name!r}; it has {sorted(files)}")
        click.echo(files[file_name].decode(errors="replace"), nl=False)
        return
    for name, data in files.items():
        click.echo(click.style(f"--- {node}/{name}", bold=True))
        click.echo(data.decode(errors="replace"), nl=False)


@main.command()
@click.argument("v1")
@click.argument("v2", required=False)
@click.option("--node", help="only this node")
@JSON
@store_options
@click.pass_obj
@expected_errors
def diff(obj: OperatorContext, v1: str, v2: str | None, node: str | None, as_json: bool) -> None:
    """Unified diff of what changed from V1 to V2 (default: current).

    \b
    Example:
      nightjar diff 20261121T110000000000Z-0a1b2c3d --node fish.service.local/gateway
    """
    store = obj.store()
    old, new = ops.load_index(store, v1), ops.load_index(store, v2)
    changes, lines = ops.diff(store, old, new, node)

    def human() -> None:
        if not changes:
            click.echo(f"no differences between {old.version} and {new.version}")
        for line in lines:
            colour = "green" if line.startswith("+") else "red" if line.startswith("-") else None
            click.echo(click.style(line.rstrip("\n"), fg=colour))

    emit(changes, as_json, human)


@main.command()
@VERSION
@JSON
@store_options
@click.pass_obj
@expected_errors
def problems(obj: OperatorContext, version: str | None, as_json: bool) -> None:
    """Input items the configurator rejected for a version, with reasons.

    \b
    Example:
      nightjar problems --json
    """
    index = ops.load_index(obj.store(), version)
    rows = [p.model_dump() for p in index.summary.problems]

    def human() -> None:
        if not rows:
            click.echo(f"no problems in {index.version}")
        else:
            table(rows, ["where", "item", "reason"])

    emit(rows, as_json, human)


def _version_mark(row: VersionRow) -> str:
    return "*" if row.current else "" if row.ever_current else "!"


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _next_steps(version: str, frozen: bool) -> None:
    click.echo(f"fetchers will apply {version} on their next poll (within NJ_POLL_INTERVAL).")
    if frozen:
        click.echo("the configurator will not publish until 'nightjar unfreeze'.")
    else:
        click.echo("the configurator publishes again on its next cycle if Cloud Map differs.")


@main.command()
@click.argument("version")
@click.option("--reason", help="why (shown by 'nightjar status')")
@click.option("--by", default=None, help="who (default: the current user)")
@store_options
@click.pass_obj
@expected_errors
def rollback(obj: OperatorContext, version: str, reason: str | None, by: str | None) -> None:
    """Point the manifest at an older retained VERSION and freeze it.

    \b
    Example:
      nightjar rollback 20261121T110000000000Z-0a1b2c3d --reason "canary 5xx"
    """
    store = obj.store()
    ops.point_manifest(
        store, version, frozen=True, by=by or _operator(), reason=reason or "rollback", now=_now()
    )
    click.echo(f"manifest now points to {version} (frozen).")
    _next_steps(version, True)


@main.command()
@click.option("--reason", help="why (shown by 'nightjar status')")
@click.option("--by", default=None, help="who (default: the current user)")
@store_options
@click.pass_obj
@expected_errors
def freeze(obj: OperatorContext, reason: str | None, by: str | None) -> None:
    """Freeze the current version: the configurator stops publishing.

    \b
    Example:
      nightjar freeze --reason "incident 4711"
    """
    store = obj.store()
    version = ops.current(store).manifest.version
    ops.point_manifest(store, version, frozen=True, by=by or _operator(), reason=reason, now=_now())
    click.echo(f"{version} is frozen; the configurator will not publish until 'nightjar unfreeze'.")


@main.command()
@click.option("--reason", help="why (logged in your shell history, not stored)")
@store_options
@click.pass_obj
@expected_errors
def unfreeze(obj: OperatorContext, reason: str | None) -> None:
    """Let the configurator publish again.

    \b
    Example:
      nightjar unfreeze
    """
    store = obj.store()
    manifest = ops.current(store).manifest
    if not manifest.frozen:
        raise OperatorError(f"nothing to unfreeze: {manifest.version} is not frozen")
    version = manifest.version
    ops.point_manifest(store, version, frozen=False, by=None, reason=None, now=_now())
    click.echo(f"{version} is no longer frozen.")
    _next_steps(version, False)


@main.command()
@click.option("--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
@JSON
@store_options
@click.pass_obj
@expected_errors
def gc(obj: OperatorContext, dry_run: bool, as_json: bool) -> None:
    """Apply retention now (NJ_KEEP_VERSIONS, NJ_GRACE_SECONDS).

    \b
    Example:
      nightjar gc --dry-run
    """
    settings = obj.settings()
    report = obj.store().collect_garbage(
        keep=settings.keep_versions,
        grace=settings.grace,
        now=_now(),
        dry_run=dry_run,
    )

    def human() -> None:
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"kept {len(report.kept_versions)} version(s)")
        click.echo(
            f"{verb} {len(report.deleted_versions)} version(s), "
            f"{len(report.deleted_objects)} object(s)"
        )
        for version in report.deleted_versions:
            click.echo(f"  version {version}")
        for digest in report.deleted_objects:
            click.echo(f"  object  {digest}")

    emit(report, as_json, human)


main.add_command(render)
main.add_command(validate)
main.add_command(import_appmesh)
main.add_command(shift)
