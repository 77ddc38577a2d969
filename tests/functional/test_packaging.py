"""Packaging contract: entry points answer --help/--version; the sidecar stays thin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared import __version__

BIN = Path(sys.executable).parent


def run(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True)


@pytest.mark.parametrize("script", ["nightjar", "nightjar-configurator", "nightjar-fetcher"])
def test_console_scripts_answer_help_and_version(script: str) -> None:
    """Each installed console script prints usage with an example, and its version."""
    help_out = subprocess.run([BIN / script, "--help"], capture_output=True, text=True, check=True)
    assert "Usage:" in help_out.stdout and "Example:" in help_out.stdout
    version = subprocess.run(
        [BIN / script, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"{script}, version {__version__}"


HEAVY = ("configurator", "chevron", "yaml")


def imported_heavy_modules(packages: tuple[str, ...], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Modules of the ``heavy`` packages or modules (``yaml``, ``http.server``) a fresh Python
    holds after importing every module of ``packages``."""
    root = Path(__file__).resolve().parents[2]
    modules = [
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for package in packages
        for p in sorted((root / package).rglob("*.py"))
    ]
    assert modules
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"heavy = {set(heavy)!r}\n"
        "bad = sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    )
    return [m for m in result.stdout.strip().split(",") if m]


def test_fetcher_and_shared_import_no_configurator_code() -> None:
    """Importing every envoy_fetcher and shared module pulls in no configurator, chevron or yaml."""
    assert imported_heavy_modules(("envoy_fetcher", "shared")) == []


def test_fetcher_without_metrics_does_not_import_prometheus_client() -> None:
    """Metrics off (the default): importing every fetcher module, the CLI included, loads no
    prometheus_client nor an HTTP server; they are imported only when NJ_METRICS_PORT starts
    the metrics server."""
    heavy = ("prometheus_client", "http.server", "socketserver")
    assert imported_heavy_modules(("envoy_fetcher",), heavy) == []


def test_the_sidecar_runs_on_botocore_pydantic_and_click_alone() -> None:
    """Every fetcher and shared module imports without boto3 (nor its S3 transfer manager) and
    without pydantic-settings: AWS clients come from botocore sessions, settings read NJ_* from
    the environment themselves (docs/performance.md)."""
    heavy = ("boto3", "s3transfer", "pydantic_settings")
    assert imported_heavy_modules(("envoy_fetcher", "shared"), heavy) == []


def test_base_install_operator_cli_needs_no_templates_engine(tmp_path: Path) -> None:
    """Without chevron and PyYAML (pip install nightjar-mesh, no extras): ``nightjar --help``
    works and ``render`` says in one line which extra to install, never ModuleNotFoundError."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('chevron', 'yaml'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from nightjar_cli.cli import main\n"
        "main()\n"
    )
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("namespaces: {}\n")
    argv = [sys.executable, "-c", blocker]
    assert subprocess.run([*argv, "--help"], capture_output=True, text=True).returncode == 0
    result = subprocess.run(
        [*argv, "render", "--mesh", str(mesh), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert output.strip().splitlines() == [
        "Error: 'nightjar render' renders templates and needs the configurator extra (missing "
        "chevron): pip install 'nightjar-mesh[configurator]'"
    ]


def test_operator_cli_imports_no_configurator_code() -> None:
    """Every nightjar_cli module imports without configurator, chevron or yaml: the inspection,
    rollback, freeze and gc commands run from the base install (render/validate load it lazily)."""
    assert imported_heavy_modules(("nightjar_cli",)) == []
