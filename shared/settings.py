"""The settings pattern: one settings class per process, environment prefix ``NJ_``.

Processes subclass ``NightjarSettings``; click options mirror the fields and are passed as keyword
arguments, which take precedence over the environment. Tests build settings with keywords.

The environment is read here, not by pydantic-settings: every field ``name`` is filled from
``NJ_<NAME>`` (any case) when no keyword gives it, as a string that the field's type and
validators parse; a field that holds a list parses its string itself (``CommaList``). Unknown
``NJ_*`` variables are ignored, unknown keywords are an error, defaults are validated too. That
is all nightjar used of pydantic-settings, whose import (asyncio, argparse, dotenv and its own
sources) cost every sidecar about 3 MB of memory (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import SettingsError
from shared.logs import LogFormat

CommaList = list[str]  # from the environment as ``a,b``: pair it with ``split_commas``
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_PREFIX = "NJ_"


def split_commas(value: object) -> object:
    """Accept ``a,b`` (environment) as well as a list (keywords, repeated flags)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def environment_values(
    fields: Mapping[str, object], environ: Mapping[str, str], prefix: str = ENV_PREFIX
) -> dict[str, str]:
    """Field name -> the value of ``<prefix><NAME>`` in ``environ`` (names compared in any case)."""
    lowered = {key.lower(): value for key, value in environ.items()}
    found = {}
    for name in fields:
        key = f"{prefix}{name}".lower()
        if key in lowered:
            found[name] = lowered[key]
    return found


class NightjarSettings(BaseModel):
    """Settings every nightjar process shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    env_prefix: ClassVar[str] = ENV_PREFIX

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """Keyword arguments win; the environment fills every field they leave out."""
        if not isinstance(data, dict):
            return data
        return {**environment_values(cls.model_fields, os.environ, cls.env_prefix), **data}

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
