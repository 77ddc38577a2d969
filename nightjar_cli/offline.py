"""``nightjar render`` and ``nightjar validate``: offline preview, no AWS.

Both import the configurator (chevron, PyYAML) only when they run, through
``configurator.preview``, so the inspection commands work from the base install.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

from nightjar_cli.context import OperatorContext
from nightjar_cli.errors import OperatorError
from shared.cli import expected_errors
from shared.envoy_bin import find_envoy
from shared.models import LDS_FILE


def _preview(command: str) -> ModuleType:
    """``configurator.preview`` (the configurator extra), or one sentence saying to install it."""
    try:
        return importlib.import_module("configurator.preview")
    except ModuleNotFoundError as err:
        raise OperatorError(
            f"'nightjar {command}' renders templates and needs the configurator extra "
            f"(missing {err.name}): pip install 'nightjar-mesh[configurator]'"
        ) from err


@click.command()
@click.option(
    "--mesh",
    "mesh_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    multiple=True,
    help="YAML mesh description (docs/cli.md); repeat it to serve several meshes together",
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
def render(
    obj: OperatorContext, mesh_files: tuple[Path, ...], out: Path, templates_dir: Path | None
) -> None:
    """Render every node of mesh files offline (no AWS), validated like the configurator;
    the peer listeners of each sidecar (PEERS) are listed.

    \b
    Example:
      nightjar render --mesh examples/fish.yaml --out rendered/
      nightjar render --mesh examples/fish.yaml --mesh examples/reef.yaml --out rendered/
    """
    render_mesh_file = _preview("render").render_mesh_file
    envoy = find_envoy(obj.settings().envoy_bin)
    rendered = render_mesh_file(list(mesh_files), templates_dir, envoy)
    for node, files in rendered.nodes.items():
        for name, data in files.items():
            target = out / node / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    click.echo(f"rendered {len(rendered.nodes)} node(s) into {out}")
    for node, listeners in sorted(rendered.peer_listeners.items()):
        for listener in listeners:
            click.echo(f"peer listener: {node}: {listener.describe()}")
    for problem in rendered.problems:
        click.echo(f"problem: {problem.where}: {problem.item}: {problem.reason}", err=True)


def read_rendered(directory: Path) -> dict[str, dict[str, bytes]]:
    """Every rendered node under ``directory`` (a directory holding lds.yaml) and its files."""
    node_dirs = sorted({p.parent for p in directory.rglob(LDS_FILE)})
    if not node_dirs:
        raise OperatorError(f"no rendered nodes ({LDS_FILE}) under {directory}")
    return {
        str(node_dir.relative_to(directory)): {
            p.name: p.read_bytes() for p in node_dir.iterdir() if p.is_file()
        }
        for node_dir in node_dirs
    }


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
@expected_errors
def validate(obj: OperatorContext, directory: Path) -> None:
    """Run 'envoy --mode validate' on every rendered node under DIRECTORY (exit 1 if any fails).

    \b
    Example:
      nightjar validate rendered/
    """
    envoy = find_envoy(obj.settings().envoy_bin)
    if envoy is None:
        raise OperatorError("no envoy binary found; set NJ_ENVOY_BIN")
    nodes = read_rendered(directory)
    errors = _preview("validate").validate_nodes(nodes, envoy)
    for node, error in errors.items():
        click.echo(f"ok    {node}" if error is None else f"FAIL  {node}: {error}")
    failed = sum(error is not None for error in errors.values())
    if failed:
        click.echo(f"{failed} of {len(errors)} node(s) failed validation", err=True)
        sys.exit(1)
