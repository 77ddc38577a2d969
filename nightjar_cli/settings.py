"""Settings of the ``nightjar`` operator CLI (environment ``NJ_*``, mirrored by click options)."""

from __future__ import annotations

from shared.settings import StoreUpkeepSettings


class OperatorSettings(StoreUpkeepSettings):
    """What the CLI reads: the store, retention for ``gc``, the envoy binary for ``validate``."""
