"""How every nightjar command line turns expected failures into exits (one sentence, no trace).

``NightjarError`` -> exit 1 with its message; a settings problem (``SettingsError`` or a pydantic
``ValidationError`` from a settings class) -> exit 2, naming the ``NJ_`` variable. Either way the
output is the single line ``Error: <sentence>``. Ctrl-C -> exit 130 with ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from shared.errors import NightjarError, SettingsError
from shared.settings import NightjarSettings, describe_settings_error

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=NightjarSettings)

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class SettingsProblem(click.ClickException):
    """A settings mistake: one ``Error:`` line, exit 2 (without click's usage banner)."""

    exit_code = EXIT_USAGE


def expected_errors(fn: F) -> F:
    """Run ``fn``; a nightjar error becomes a click error (exit 2 for settings, else 1)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SettingsError as err:
            raise SettingsProblem(str(err)) from err
        except NightjarError as err:
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def build_settings(cls: type[S], flags: dict[str, Any]) -> S:
    """``cls`` from the environment with the given flags on top (unset flags are skipped)."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    try:
        return cls(**given)
    except ValidationError as err:
        raise SettingsError(describe_settings_error(err)) from err
