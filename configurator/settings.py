"""Settings of ``nightjar-configurator`` (environment ``NJ_*``, mirrored by click options)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator

from shared.errors import SettingsError
from shared.models import MAX_OBJECT_BYTES
from shared.settings import CommaList, StoreUpkeepSettings, split_commas


class ConfiguratorSettings(StoreUpkeepSettings):
    """Everything the configurator process reads from its environment."""

    namespaces: CommaList = Field(default_factory=list, description="Cloud Map namespaces")
    templates_dir: Path | None = Field(default=None, description="template override directory")
    interval: float = Field(default=30.0, gt=0, description="seconds between cycles (run)")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus port")
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics binds")
    max_object_bytes: int = Field(
        default=MAX_OBJECT_BYTES, ge=1, description="largest rendered file published"
    )
    check_seconds: float = Field(
        default=300.0, ge=0, description="how often the current version's objects are listed"
    )
    signing_key: str = Field(default="", description="KMS key id that signs every version")

    health_max_age: float = Field(
        default=300.0, gt=0, description="/healthz fails when the last good cycle is older"
    )

    _split = field_validator("namespaces", mode="before")(split_commas)

    @property
    def check_every(self) -> timedelta:
        """``check_seconds`` as a duration."""
        return timedelta(seconds=self.check_seconds)

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
