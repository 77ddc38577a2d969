"""Settings of ``nightjar-fetcher`` (environment ``NJ_*``, mirrored by click options)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from pydantic import Field, field_validator

from shared.errors import SettingsError
from shared.models import GATEWAY_NODE_RE, MAX_OBJECT_BYTES, SIDECAR_NODE_RE
from shared.placeholders import task_values
from shared.settings import NightjarSettings

DRAIN_FLAG = "--drain-time-s"
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")


class FetcherSettings(NightjarSettings):
    """Everything the fetcher sidecar reads from its environment."""

    node: str = Field(
        default="", description="<namespace>/<service>/<color> or <namespace>/gateway"
    )
    config_dir: Path = Field(default=Path("/var/run/nightjar"), description="releases + bootstrap")
    poll_interval: float = Field(default=10.0, gt=0, description="seconds between polls")
    poll_jitter: float = Field(default=0.1, ge=0, le=1, description="+/- fraction of the interval")
    backoff_max: float = Field(default=120.0, gt=0, description="longest wait while S3 fails")
    listener_port: int = Field(default=8080, ge=1, le=65535)
    listener_address: str = Field(
        default="", description="default: 0.0.0.0 gateway, 127.0.0.1 sidecar"
    )
    admin_port: int = Field(default=9901, ge=1, le=65535)
    max_object_bytes: int = Field(
        default=MAX_OBJECT_BYTES, ge=1, description="largest file accepted"
    )
    keep_releases: int = Field(default=3, ge=2)
    envoy_bin: str = Field(default="envoy")
    envoy_log_level: str = Field(default="info")
    envoy_args: str = Field(default="", description="extra envoy arguments (shell words)")
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Envoy's drain time: after a listener change, and before stop",
    )
    confirm_seconds: float = Field(default=15.0, gt=0, description="wait for Envoy to accept")
    envoy_log_format: str = Field(
        default="json", description="json (one object per stderr line) or text (Envoy's own)"
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus port")
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics binds")
    health_max_poll_age: float = Field(
        default=60.0, gt=0, description="health fails when the last good poll is older"
    )
    verify_key: str = Field(
        default="", description="public key (PEM text or file) or KMS key id bundles must verify"
    )

    @field_validator("config_dir")
    @classmethod
    def _config_dir_form(cls, value: Path) -> Path:
        # The path is filled into quoted strings of the bundle's YAML (${NJ_CONFIG_DIR}).
        text = str(value)
        if any(c in text for c in '"\\') or not text.isprintable():
            raise ValueError(
                f"config dir {text!r} must not contain quotes, backslashes or controls"
            )
        return value

    @field_validator("envoy_args")
    @classmethod
    def _envoy_args_split(cls, value: str) -> str:
        try:
            words = shlex.split(value)
        except ValueError as err:
            raise ValueError(f"{value!r} is not valid shell words ({err})") from err
        if any(w == DRAIN_FLAG or w.startswith(DRAIN_FLAG + "=") for w in words):
            # Envoy refuses a flag given twice; and the stop's wait must match the drain.
            raise ValueError(f"do not pass {DRAIN_FLAG} in envoy args: set NJ_DRAIN_SECONDS")
        return value

    @field_validator("envoy_log_level")
    @classmethod
    def _envoy_level_known(cls, value: str) -> str:
        if value.lower() not in ENVOY_LOG_LEVELS:
            raise ValueError(
                f"envoy log level {value!r} is not one of {', '.join(ENVOY_LOG_LEVELS)}"
            )
        return value.lower()

    @field_validator("envoy_log_format")
    @classmethod
    def _envoy_format_known(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError(f"envoy log format {value!r} is not json or text")
        return value

    @field_validator("node")
    @classmethod
    def _node_form(cls, value: str) -> str:
        if value and not (SIDECAR_NODE_RE.match(value) or GATEWAY_NODE_RE.match(value)):
            raise ValueError(
                f"node {value!r} must be <namespace>/<service>/<color> or <namespace>/gateway"
            )
        return value

    def bind_address(self) -> str:
        """Where the node's listener binds: as set, else all interfaces for a gateway."""
        if self.listener_address:
            return self.listener_address
        return "0.0.0.0" if GATEWAY_NODE_RE.match(self.node) else "127.0.0.1"

    def envoy_drain_time(self) -> int:
        """Envoy's ``--drain-time-s`` (whole seconds, rounded up, at least 1): how long a changed
        or removed listener keeps its connections (old routes) and how long the drain before stop
        lasts. Never 0: Envoy would then close, at every route change, the connections the old
        listener had just accepted, before they got an answer."""
        return max(1, math.ceil(self.drain_seconds))

    def require_node(self) -> None:
        """SettingsError unless a node is set (the fetcher cannot guess which node it serves)."""
        if not self.node:
            raise SettingsError(
                "no node: set NJ_NODE or pass --node (e.g. fish.service.local/gateway)"
            )

    def task_values(self) -> dict[str, str | int]:
        """The per-task placeholder values this fetcher fills into every release."""
        return task_values(
            self.bind_address(), self.listener_port, self.admin_port, str(self.config_dir)
        )
