"""Exceptions of the envoy_fetcher."""

from __future__ import annotations

from shared.errors import NightjarError


class FetcherError(NightjarError):
    """Base of every fetcher failure."""


class BundleRejectedError(FetcherError):
    """A version cannot be applied to this node (missing node, bad file, oversized object...)."""

    def __init__(self, message: str, *, version: str, key: str = "") -> None:
        super().__init__(message)
        self.version = version
        self.key = key


class ListenerPortError(BundleRejectedError):
    """A version's listeners need a port this task already uses (its listener or admin port):
    the version is refused for good on this task (never retried)."""


class ReleaseError(FetcherError):
    """A release cannot be staged or swapped (bad version id or file name, release not staged)."""


class EnvoyError(FetcherError):
    """Envoy could not be started, reached, or rejected a configuration."""


class ConfigDirError(FetcherError):
    """The config dir cannot be created or written (NJ_CONFIG_DIR, volume permissions)."""
