"""The settings pattern: one pydantic-settings class per process, environment prefix ``NJ_``.

Processes subclass ``NightjarSettings``; click options mirror the fields and are passed as keyword
arguments, which take precedence over the environment. Tests build settings with keywords.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import SettingsError
from shared.logs import LogFormat

CommaList = Annotated[list[str], NoDecode]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def split_commas(value: object) -> object:
    """Accept ``a,b`` (environment) as well as a list (keywords, repeated flags)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class NightjarSettings(BaseSettings):
    """Settings every nightjar process shares."""

    model_config = SettingsConfigDict(env_prefix="NJ_", extra="forbid", frozen=True)

    bucket: str = Field(default="", description="S3 bucket holding the bundle store")
    prefix: str = Field(default="nightjar", description="key prefix inside the bucket")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(default="auto", description="json, human or auto")

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"log level {value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    def require_bucket(self) -> None:
        """SettingsError unless a bucket is set (every process that reads the store needs one)."""
        if not self.bucket:
            raise SettingsError("no bucket: set NJ_BUCKET or pass --bucket")


class StoreUpkeepSettings(NightjarSettings):
    """What the processes that publish or prune versions share: retention and the envoy binary
    used to validate rendered files (the configurator, and the ``nightjar`` operator CLI)."""

    keep_versions: int = Field(default=20, ge=1, description="newest versions always kept")
    grace_seconds: int = Field(default=3600, ge=0, description="versions younger are kept")
    envoy_bin: str = Field(default="envoy", description="envoy binary used for validation")

    @property
    def grace(self) -> timedelta:
        """``grace_seconds`` as a duration."""
        return timedelta(seconds=self.grace_seconds)


def describe_settings_error(err: ValidationError) -> str:
    """The first settings error as ``NJ_<FIELD>: <message>``, the name an operator sets."""
    first = err.errors()[0]
    name = "NJ_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}"
