"""What every ``nightjar`` command gets: settings and the store, built on first use.

``render`` and ``validate`` need no AWS, so nothing is built until a command asks for it.
"""

from __future__ import annotations

from typing import Any

import click

from nightjar_cli.settings import OperatorSettings
from shared.aws import make_s3_client
from shared.cli import build_settings
from shared.s3_store import S3BundleStore
from shared.store import BundleStore


class OperatorContext:
    """The global options of one invocation, and what they lead to."""

    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self._store: BundleStore | None = None

    def settings(self) -> OperatorSettings:
        """Settings from the environment with the global flags on top (SettingsError if bad)."""
        return build_settings(OperatorSettings, self.flags)

    def store(self) -> BundleStore:
        """The S3 bundle store (SettingsError without a bucket)."""
        if self._store is None:
            settings = self.settings()
            settings.require_bucket()
            self._store = S3BundleStore(make_s3_client(), settings.bucket, settings.prefix)
        return self._store


def _store_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--bucket``/``--prefix`` after the command name override the ones before it."""
    if value is not None and isinstance(ctx.obj, OperatorContext):
        ctx.obj.flags[str(param.name)] = value


def store_options(fn: Any) -> Any:
    """Accept the store options after the command too (``nightjar status --bucket X``)."""
    for name, text in (
        ("--prefix", "key prefix in the bucket [NJ_PREFIX]"),
        ("--bucket", "S3 bucket of the bundle store [NJ_BUCKET]"),
    ):
        fn = click.option(name, help=text, expose_value=False, callback=_store_flag)(fn)
    return fn
