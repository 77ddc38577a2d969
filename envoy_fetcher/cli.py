"""``nightjar-fetcher``: the sidecar that keeps one node's Envoy files current.

The commands build settings, the store client and the Envoy process, and hand them down:
``poll.Fetcher`` (one step), ``runner.Runner`` (the loop). Expected failures leave through
``shared.cli.expected_errors`` (exit 2 for settings, 1 otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from envoy_fetcher.envoy import AdminClient, EnvoyCommand, EnvoyProcess, write_bootstrap
from envoy_fetcher.errors import EnvoyError, FetcherError
from envoy_fetcher.poll import Fetcher
from envoy_fetcher.runner import Runner
from envoy_fetcher.settings import FetcherSettings
from envoy_fetcher.state import load_state
from shared import __version__
from shared.aws import make_kms_client, make_s3_client
from shared.cli import build_settings, expected_errors
from shared.envoy_bin import find_envoy
from shared.logs import configure_logging, get_logger
from shared.s3_store import S3BundleStore
from shared.signals import stop_on_signals
from shared.signing import load_verifier

log = get_logger(__name__)


def _options(fn: Any) -> Any:
    options = [
        click.option(
            "--node", help="<namespace>/<service>/<color> or <namespace>/gateway [NJ_NODE]"
        ),
        click.option("--bucket", help="S3 bucket of the bundle store [NJ_BUCKET]"),
        click.option("--prefix", help="key prefix in the bucket [NJ_PREFIX, default nightjar]"),
        click.option(
            "--config-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="releases, current link, bootstrap [NJ_CONFIG_DIR]",
        ),
        click.option(
            "--listener-port", type=int, help="port of the node's listener [NJ_LISTENER_PORT, 8080]"
        ),
        click.option(
            "--admin-port", type=int, help="Envoy admin port on 127.0.0.1 [NJ_ADMIN_PORT, 9901]"
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_settings(flags: dict[str, Any]) -> FetcherSettings:
    """Settings from the environment with the given flags on top; SettingsError if unusable."""
    settings = build_settings(FetcherSettings, flags)
    settings.require_node()
    settings.require_bucket()
    return settings


def _fetcher(settings: FetcherSettings, envoy: EnvoyProcess | None) -> Fetcher:
    store = S3BundleStore(make_s3_client(max_attempts=2), settings.bucket, settings.prefix)
    verifier = load_verifier(settings.verify_key, make_kms_client) if settings.verify_key else None
    return Fetcher.from_dir(settings, store, envoy, verifier=verifier)


def _envoy(settings: FetcherSettings) -> EnvoyProcess:
    """The supervised Envoy for this node, its bootstrap written to the config dir."""
    binary = find_envoy(settings.envoy_bin)
    if binary is None:
        raise EnvoyError(
            f"envoy binary {settings.envoy_bin!r} not found; set NJ_ENVOY_BIN or use --no-envoy"
        )
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    boot = write_bootstrap(settings.node, settings.config_dir, settings.admin_port)
    command = EnvoyCommand(str(binary), boot, settings.envoy_log_level, settings.envoy_args)
    return EnvoyProcess(command, AdminClient(settings.admin_port))


def _runner(settings: FetcherSettings, fetcher: Fetcher, envoy: EnvoyProcess | None) -> Runner:
    return Runner(
        fetcher,
        envoy,
        interval=settings.poll_interval,
        jitter=settings.poll_jitter,
        backoff_max=settings.backoff_max,
        ready_timeout=settings.confirm_seconds,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar-fetcher")
def main() -> None:
    """Poll the bundle store and keep this node's Envoy configuration current.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar-fetcher run --node fish.service.local/gateway
    """


@main.command()
@_options
@click.option(
    "--no-envoy", is_flag=True, help="manage files only (Envoy runs in another container)"
)
@click.option("--poll-interval", type=float, help="seconds between polls [NJ_POLL_INTERVAL, 10]")
@expected_errors
def run(no_envoy: bool, **flags: Any) -> None:
    """Poll, apply new versions, and supervise Envoy until SIGTERM/SIGINT (then exit 0).

    Envoy starts at once from the last release on disk; with none, it starts when the first
    bundle arrives. Each swap is confirmed through Envoy's admin API or rolled back.

    \b
    Example:
      nightjar-fetcher run --bucket my-mesh-bucket --node fish.service.local/tuna/blue \\
          --config-dir /var/run/nightjar --listener-port 15001
    """
    settings = load_settings(flags)
    configure_logging(settings.log_level, settings.log_format)
    envoy = None if no_envoy else _envoy(settings)
    runner = _runner(settings, _fetcher(settings, envoy), envoy)
    stop = stop_on_signals(log, "fetcher.stopping")
    log.info(
        "fetcher.started",
        node=settings.node,
        bucket=settings.bucket,
        config_dir=str(settings.config_dir),
        envoy=not no_envoy,
    )
    try:
        runner.run(stop)
    finally:
        if envoy is not None:
            envoy.stop(settings.drain_seconds)
    log.info("fetcher.stopped")


@main.command()
@_options
@expected_errors
def once(**flags: Any) -> None:
    """Poll once and apply the current version without Envoy; exit 0 when it is in place.

    \b
    Example:
      nightjar-fetcher once --bucket my-mesh-bucket --node fish.service.local/gateway \\
          --config-dir ./nightjar-config
    """
    settings = load_settings(flags)
    configure_logging(settings.log_level, settings.log_format)
    step = _fetcher(settings, None).poll_once()
    if step.result in ("applied", "unchanged"):
        click.echo(f"{step.result} {step.version} in {settings.config_dir / 'current'}")
        return
    if step.result == "missing":
        raise FetcherError("no manifest in the bucket yet: run the configurator first")
    raise FetcherError(f"version {step.version} not applied: {step.detail}")


@main.command()
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="the fetcher's config dir",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@expected_errors
def status(config_dir: Path, as_json: bool) -> None:
    """Show what the fetcher applied, its last poll and error, and versions marked bad.

    \b
    Example:
      nightjar-fetcher status --config-dir /var/run/nightjar --json
    """
    if not (config_dir / "state.json").is_file():
        raise FetcherError(f"no fetcher state in {config_dir}; is this the config dir?")
    state = load_state(config_dir / "state.json")
    if as_json:
        click.echo(json.dumps(state.model_dump(mode="json"), indent=2))
        return
    rows = [
        ("node", state.node),
        ("applied version", state.applied_version or "-"),
        ("release", state.release or "-"),
        ("applied at", state.applied_at.isoformat() if state.applied_at else "-"),
        (
            "last poll",
            state.last_poll
            + (f" at {state.last_poll_at.isoformat()}" if state.last_poll_at else ""),
        ),
        ("last error", state.last_error or "-"),
        ("bad versions", ", ".join(state.bad_versions) or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
