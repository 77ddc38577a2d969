"""``nightjar render`` and ``nightjar validate``: offline preview, no AWS.

Both import the configurator (chevron, PyYAML) only when they run, through
``configurator.preview``, so the inspection commands work from the base install.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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
    help="directory to write <node id>/<file> (and <node id>/endpoints/) into",
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
    write_rendered(rendered, out)
    click.echo(f"rendered {len(rendered.node_ids)} node(s) into {out}")
    for node, listeners in sorted(rendered.peer_listeners.items()):
        for listener in listeners:
            click.echo(f"peer listener: {node}: {listener.describe()}")
    for problem in rendered.problems:
        click.echo(f"problem: {problem.where}: {problem.item}: {problem.reason}", err=True)


ENDPOINTS_DIR = "endpoints"  # in a node's directory: a link to its endpoint files
SHARED_DIR = "_sets"  # under --out: each file set several nodes share, once


def write_rendered(rendered: Any, out: Path) -> None:
    """Write ``<out>/<node id>/<file>`` for each node's own files (one copy on disk, hard-linked
    where nodes agree) and ``<out>/<node id>/endpoints/``, a link to its endpoint files written
    once under ``<out>/_sets/<set id>/``."""
    written: dict[str, Path] = {}
    sets: dict[str, dict[str, tuple[str, bytes]]] = {}
    for node in rendered.node_ids:
        node_dir = out / node
        node_dir.mkdir(parents=True, exist_ok=True)
        own, *others = rendered.set_ids(node)
        if own not in sets:
            sets[own] = rendered.set_files(own)
        for name, (digest, data) in sets[own].items():
            _write_once(node_dir / name, digest, data, written)
        for n, set_id in enumerate(others):
            shared = out / SHARED_DIR / set_id
            if not shared.is_dir():
                shared.mkdir(parents=True)
                for name, (_, data) in rendered.set_files(set_id).items():
                    (shared / name).write_bytes(data)
            link = node_dir / (ENDPOINTS_DIR if n == 0 else f"{ENDPOINTS_DIR}-{n + 1}")
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(shared, node_dir), target_is_directory=True)


def _write_once(target: Path, digest: str, data: bytes, written: dict[str, Path]) -> None:
    """Write ``data`` at ``target``, as a hard link to an identical file already written."""
    target.unlink(missing_ok=True)
    if digest in written:
        try:
            os.link(written[digest], target)
            return
        except OSError:
            pass  # a file system without hard links: a copy
    target.write_bytes(data)
    written[digest] = target


def read_rendered(directory: Path) -> dict[str, dict[str, bytes]]:
    """Every rendered node under ``directory`` (a directory holding lds.yaml) and its files,
    its ``endpoints`` directories' included."""
    found = sorted({p.parent for p in directory.rglob(LDS_FILE)})
    node_dirs = [d for d in found if SHARED_DIR not in d.relative_to(directory).parts]
    if not node_dirs:
        raise OperatorError(f"no rendered nodes ({LDS_FILE}) under {directory}")
    return {str(d.relative_to(directory)): _node_files(d) for d in node_dirs}


def _node_files(node_dir: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in node_dir.iterdir() if p.is_file()}
    for sub in sorted(node_dir.glob(f"{ENDPOINTS_DIR}*")):
        if sub.is_dir():
            files.update((p.name, p.read_bytes()) for p in sub.iterdir() if p.is_file())
    return files


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
