"""How the operator CLI prints: an aligned table for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from nightjar_cli.results import plain


def emit(data: Any, json_output: bool, human: Callable[[], None]) -> None:
    """``data`` as indented JSON when asked, else whatever ``human`` prints."""
    if json_output:
        click.echo(json.dumps(plain(data), indent=2, default=str))
    else:
        human()


def table(rows: list[Any], columns: list[str]) -> None:
    """An aligned table of results (or dicts); ``None`` shows as '-'."""
    dicts = [plain(row) for row in rows]
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in dicts]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
