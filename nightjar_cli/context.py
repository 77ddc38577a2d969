"""What every ``nightjar`` command gets: settings and the store, built on first use.

``render`` and ``validate`` need no AWS, so nothing is built until a command asks for it.
"""

from __future__ import annotations

from typing import Any

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
