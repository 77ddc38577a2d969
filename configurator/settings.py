"""Settings of ``nightjar-configurator`` (environment ``NJ_*``, mirrored by click options)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import CommaList, NightjarSettings, split_commas


class OperatorSettings(NightjarSettings):
    """What the ``nightjar`` operator CLI reads (retention for ``gc``, envoy for ``validate``)."""

    keep_versions: int = Field(default=20, ge=1, description="newest versions always kept")
    grace_seconds: int = Field(default=3600, ge=0, description="versions younger are kept")
    envoy_bin: str = Field(default="envoy", description="envoy binary used for validation")


class ConfiguratorSettings(OperatorSettings):
    """Everything the configurator process reads from its environment."""

    namespaces: CommaList = Field(default_factory=list, description="Cloud Map namespaces")
    templates_dir: Path | None = Field(default=None, description="template override directory")
    interval: float = Field(default=30.0, gt=0, description="seconds between cycles (run)")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus port")
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics binds")

    _split = field_validator("namespaces", mode="before")(split_commas)
