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


def imported_heavy_modules(packages: tuple[str, ...]) -> list[str]:
    """Configurator, chevron and yaml modules a fresh Python holds after importing every module
    of ``packages``."""
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
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'configurator', 'chevron', 'yaml'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    )
    return [m for m in result.stdout.strip().split(",") if m]


def test_fetcher_and_shared_import_no_configurator_code() -> None:
    """Importing every envoy_fetcher and shared module pulls in no configurator, chevron or yaml."""
    assert imported_heavy_modules(("envoy_fetcher", "shared")) == []


def test_operator_cli_imports_no_configurator_code() -> None:
    """Every nightjar_cli module imports without configurator, chevron or yaml: the inspection,
    rollback, freeze and gc commands run from the base install (render/validate load it lazily)."""
    assert imported_heavy_modules(("nightjar_cli",)) == []
