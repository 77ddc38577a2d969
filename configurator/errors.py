"""Exceptions of the configurator."""

from __future__ import annotations

from shared.errors import NightjarError


class ConfiguratorError(NightjarError):
    """Base of every configurator failure."""


class DiscoveryError(ConfiguratorError):
    """Part of a namespace could not be read from Cloud Map (after retries)."""

    def __init__(self, message: str, *, namespace: str, operation: str, code: str = "") -> None:
        super().__init__(message)
        self.namespace = namespace
        self.operation = operation
        self.code = code


class TemplateError(ConfiguratorError):
    """A template could not be loaded or rendered."""


class AlarmReadError(ConfiguratorError):
    """CloudWatch did not say what state the alarms of the traffic shifts are in."""
