"""Settings of ``nightjar-configurator`` (environment ``NJ_*``, mirrored by click options)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from shared.errors import SettingsError
from shared.settings import CommaList, StoreUpkeepSettings, split_commas


class ConfiguratorSettings(StoreUpkeepSettings):
    """Everything the configurator process reads from its environment."""

    namespaces: CommaList = Field(default_factory=list, description="Cloud Map namespaces")
    templates_dir: Path | None = Field(default=None, description="template override directory")
    interval: float = Field(default=30.0, gt=0, description="seconds between cycles (run)")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus port")
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics binds")
    health_max_age: float = Field(
        default=300.0, gt=0, description="/healthz fails when the last good cycle is older"
    )

    _split = field_validator("namespaces", mode="before")(split_commas)

    def require_metrics_port(self) -> int:
        """The metrics port; SettingsError when it is not set (health asks the running process)."""
        if self.metrics_port is None:
            raise SettingsError(
                "no metrics port: 'health' asks the running configurator's /healthz; set "
                "NJ_METRICS_PORT for both"
            )
        return self.metrics_port

    def require_namespaces(self) -> None:
        """SettingsError unless at least one namespace is set."""
        if not self.namespaces:
            raise SettingsError("no namespace: set NJ_NAMESPACES or pass --namespace")
