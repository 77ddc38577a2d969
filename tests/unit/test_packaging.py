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


def test_fetcher_and_shared_import_no_configurator_code() -> None:
    """Importing every envoy_fetcher and shared module pulls in no configurator, chevron or yaml."""
    root = Path(__file__).resolve().parents[2]
    modules = [
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for package in ("envoy_fetcher", "shared")
        for p in sorted((root / package).rglob("*.py"))
    ]
    assert "shared.store" in modules and "envoy_fetcher.cli" in modules
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
    assert result.stdout.strip() == ""
