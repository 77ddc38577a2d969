"""``nightjar``: the operator CLI to inspect, compare, roll back and freeze bundles.

Human output is an aligned table (colour only on a terminal); ``--json`` is for scripts.
Expected failures are one sentence and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from configurator import operations as ops
from configurator.cycle import Configurator
from configurator.discovery import StaticDiscovery
from configurator.mesh_file import load_mesh_file
from configurator.render import TemplateLibrary
from configurator.settings import OperatorSettings
from configurator.validate import EnvoyValidator
from shared import __version__
from shared.aws import make_s3_client
from shared.envoy_bin import find_envoy
from shared.errors import NightjarError
from shared.memory_store import MemoryBundleStore
from shared.s3_store import S3BundleStore
from shared.settings import describe_settings_error
from shared.store import BundleStore

F = TypeVar("F", bound=Callable[..., Any])


def _now() -> datetime:
    return datetime.now(UTC)


class Ctx:
    """Settings and the store, built on first use (``render``/``validate`` need no AWS)."""

    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = {k: v for k, v in flags.items() if v is not None}
        self._store: BundleStore | None = None

    def settings(self) -> OperatorSettings:
        try:
            return OperatorSettings(**self.flags)
        except ValidationError as err:
            raise click.UsageError(describe_settings_error(err)) from err

    def store(self) -> BundleStore:
        if self._store is None:
            settings = self.settings()
            if not settings.bucket:
                raise click.UsageError("no bucket: set NJ_BUCKET or pass --bucket")
            try:
                client = make_s3_client()
            except NightjarError as err:
                raise click.ClickException(str(err)) from err
            self._store = S3BundleStore(client, settings.bucket, settings.prefix)
        return self._store


def expected_errors(fn: F) -> F:
    """Expected failures become one-sentence click errors (exit 1), never tracebacks."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NightjarError as err:
            raise click.ClickException(str(err)) from err

    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """An aligned table; ``None`` shows as '-'."""
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


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
    ctx.obj = Ctx({"bucket": bucket, "prefix": prefix})


@main.command()
@JSON
@click.pass_obj
@expected_errors
def status(obj: Ctx, as_json: bool) -> None:
    """Current version, its age, frozen state, node and problem counts.

    \b
    Example:
      nightjar status --json
    """
    data = ops.status(obj.store(), _now())

    def human() -> None:
        frozen = "no"
        if data["frozen"]:
            frozen = click.style(f"yes, by {data['frozen_by']}: {data['frozen_reason']}", fg="red")
        for key, value in [
            ("version", data["version"]),
            ("created", f"{data['created']} ({timedelta(seconds=data['age_seconds'])} ago)"),
            ("frozen", frozen),
            ("nodes", data["nodes"]),
            ("problems", data["problems"]),
            ("written by", data["generator"]),
        ]:
            click.echo(f"{key:<10}  {value}")

    emit(data, as_json, human)


@main.command()
@JSON
@click.pass_obj
@expected_errors
def versions(obj: Ctx, as_json: bool) -> None:
    """Retained versions, newest first; '*' marks the current one.

    \b
    Example:
      nightjar versions --json | jq -r '.[] | select(.current) | .version'
    """
    rows = ops.versions(obj.store())

    def human() -> None:
        shown = [{**r, "": "*" if r["current"] else ""} for r in rows]
        table(shown, ["", "version", "created", "parent", "nodes", "changed_nodes"])

    emit(rows, as_json, human)


@main.command()
@VERSION
@JSON
@click.pass_obj
@expected_errors
def nodes(obj: Ctx, version: str | None, as_json: bool) -> None:
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
@click.pass_obj
@expected_errors
def show(obj: Ctx, node: str, version: str | None, file_name: str | None) -> None:
    """Print a node's files exactly as published.

    \b
    Example:
      nightjar show fish.service.local/gateway --file lds.yaml
    """
    store = obj.store()
    files = ops.node_files(store, ops.load_index(store, version), node)
    if file_name is not None:
        if file_name not in files:
            raise click.ClickException(f"{node} has no file {file_name!r}; it has {sorted(files)}")
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
@click.pass_obj
@expected_errors
def diff(obj: Ctx, v1: str, v2: str | None, node: str | None, as_json: bool) -> None:
    """Unified diff of what changed from V1 to V2 (default: current).

    \b
    Example:
      nightjar diff 20261121T110000000000Z-0a1b2c3d --node fish.service.local/gateway
    """
    store = obj.store()
    old, new = ops.load_index(store, v1), ops.load_index(store, v2)
    changes, lines = ops.diff(store, old, new, node)
    data = [{"node": c.node, "file": c.file, "change": c.change} for c in changes]

    def human() -> None:
        if not changes:
            click.echo(f"no differences between {old.version} and {new.version}")
        for line in lines:
            colour = "green" if line.startswith("+") else "red" if line.startswith("-") else None
            click.echo(click.style(line.rstrip("\n"), fg=colour))

    emit(data, as_json, human)


@main.command()
@VERSION
@JSON
@click.pass_obj
@expected_errors
def problems(obj: Ctx, version: str | None, as_json: bool) -> None:
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
@click.pass_obj
@expected_errors
def rollback(obj: Ctx, version: str, reason: str | None, by: str | None) -> None:
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
@click.pass_obj
@expected_errors
def freeze(obj: Ctx, reason: str | None, by: str | None) -> None:
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
@click.pass_obj
@expected_errors
def unfreeze(obj: Ctx, reason: str | None) -> None:
    """Let the configurator publish again.

    \b
    Example:
      nightjar unfreeze
    """
    store = obj.store()
    version = ops.current(store).manifest.version
    ops.point_manifest(store, version, frozen=False, by=None, reason=None, now=_now())
    click.echo(f"{version} is no longer frozen.")
    _next_steps(version, False)


@main.command()
@click.option("--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
@JSON
@click.pass_obj
@expected_errors
def gc(obj: Ctx, dry_run: bool, as_json: bool) -> None:
    """Apply retention now (NJ_KEEP_VERSIONS, NJ_GRACE_SECONDS).

    \b
    Example:
      nightjar gc --dry-run
    """
    settings = obj.settings()
    report = obj.store().collect_garbage(
        keep=settings.keep_versions,
        grace=timedelta(seconds=settings.grace_seconds),
        now=_now(),
        dry_run=dry_run,
    )
    data = {
        "dry_run": dry_run,
        "kept_versions": report.kept_versions,
        "deleted_versions": report.deleted_versions,
        "deleted_objects": report.deleted_objects,
    }

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

    emit(data, as_json, human)


@main.command()
@click.option(
    "--mesh",
    "mesh_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="YAML mesh description (docs/cli.md)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="directory to write <node id>/<file> into",
)
@click.option(
    "--templates-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="template overrides [NJ_TEMPLATES_DIR]",
)
@click.pass_obj
@expected_errors
def render(obj: Ctx, mesh_file: Path, out: Path, templates_dir: Path | None) -> None:
    """Render every node of a mesh file offline (no AWS), validated like the configurator.

    \b
    Example:
      nightjar render --mesh examples/fish.yaml --out rendered/
    """
    raw = load_mesh_file(mesh_file)
    store = MemoryBundleStore()
    configurator = Configurator(
        namespaces=[ns.name for ns in raw],
        store=store,
        discovery=StaticDiscovery(raw),
        templates=TemplateLibrary(templates_dir),
        validator=EnvoyValidator(find_envoy(obj.settings().envoy_bin)),
    )
    report = configurator.run_cycle()
    if report.outcome != "published":
        raise click.ClickException(f"nothing rendered: {report.error or report.outcome}")
    index = ops.load_index(store, None)
    for node in index.nodes:
        for name, data in ops.node_files(store, index, node).items():
            target = out / node / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    click.echo(f"rendered {len(index.nodes)} node(s) into {out}")
    for problem in report.problems:
        click.echo(f"problem: {problem.where}: {problem.item}: {problem.reason}", err=True)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
@expected_errors
def validate(obj: Ctx, directory: Path) -> None:
    """Run 'envoy --mode validate' on every rendered node under DIRECTORY (exit 1 if any fails).

    \b
    Example:
      nightjar validate rendered/
    """
    envoy = find_envoy(obj.settings().envoy_bin)
    if envoy is None:
        raise click.ClickException("no envoy binary found; set NJ_ENVOY_BIN")
    validator = EnvoyValidator(envoy)
    node_dirs = sorted({p.parent for p in directory.rglob("lds.yaml")})
    if not node_dirs:
        raise click.ClickException(f"no rendered nodes (lds.yaml) under {directory}")
    failed = 0
    for node_dir in node_dirs:
        files = {p.name: p.read_bytes() for p in node_dir.iterdir() if p.is_file()}
        verdict = validator.validate(files)
        label = node_dir.relative_to(directory)
        if verdict.ok:
            click.echo(f"ok    {label}")
        else:
            failed += 1
            click.echo(f"FAIL  {label}: {verdict.errors[0]}")
    if failed:
        click.echo(f"{failed} of {len(node_dirs)} node(s) failed validation", err=True)
        sys.exit(1)
