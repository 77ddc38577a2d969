"""``nightjar-fetcher``: the sidecar that keeps one node's Envoy files current.

The commands build settings, the store client and the Envoy process, and hand them down:
``poll.Fetcher`` (one step), ``runner.Runner`` (the loop). Expected failures leave through
``shared.cli.expected_errors`` (exit 2 for settings, 1 otherwise).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from envoy_fetcher.envoy import (
    JSON_LOG_FORMAT,
    AdminClient,
    EnvoyCommand,
    EnvoyProcess,
    Proxy,
    write_bootstrap,
)
from envoy_fetcher.errors import ConfigDirError, EnvoyError, FetcherError
from envoy_fetcher.external import ExternalEnvoy
from envoy_fetcher.health import HealthInput, judge_health
from envoy_fetcher.inotify import read_instance_limit
from envoy_fetcher.metrics import FetcherMetrics, serve_fetcher_metrics
from envoy_fetcher.poll import Fetcher, Step
from envoy_fetcher.release import ReleaseDir
from envoy_fetcher.runner import Runner
from envoy_fetcher.settings import FetcherSettings
from envoy_fetcher.state import FetcherState, heartbeat_age, load_state
from shared import __version__
from shared.aws import FETCHER, S3_READS, make_kms_client, make_s3_client
from shared.cli import build_settings, expected_errors
from shared.envoy_bin import find_envoy
from shared.errors import SettingsError
from shared.logs import configure_logging, get_logger
from shared.s3_store import S3BundleStore
from shared.signals import stop_on_signals
from shared.signing import Verifier, load_verifier

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


def prepare_config_dir(path: Path) -> None:
    """Create the config dir (and parents) and check it is writable; ConfigDirError if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigDirError(
            f"config dir {path} cannot be created ({err.strerror}): check NJ_CONFIG_DIR / "
            "--config-dir and the volume mount"
        ) from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigDirError(
            f"config dir {path} is not writable by this user (uid {os.getuid()}): check "
            "NJ_CONFIG_DIR and the volume's permissions"
        )


def _verifier(settings: FetcherSettings) -> Verifier | None:
    """The key bundles must be signed with (NJ_VERIFY_KEY), or None when unset."""
    if not settings.verify_key:
        return None
    return load_verifier(settings.verify_key, lambda: make_kms_client(FETCHER))


def _store(settings: FetcherSettings) -> S3BundleStore:
    """The bundle store, read only: its client has nothing but GetObject (a leaner process)."""
    return S3BundleStore(make_s3_client(FETCHER, S3_READS), settings.bucket, settings.prefix)


def _metrics(settings: FetcherSettings) -> FetcherMetrics:
    """Prometheus metrics on NJ_METRICS_PORT, or the recorder that records nothing."""
    if settings.metrics_port is None:
        return FetcherMetrics()
    metrics, _ = serve_fetcher_metrics(settings.metrics_host, settings.metrics_port)
    log.info("metrics.listening", host=settings.metrics_host, port=settings.metrics_port)
    return metrics


def _envoy(
    settings: FetcherSettings, metrics: FetcherMetrics, inotify_limit: int | None
) -> EnvoyProcess:
    """The supervised Envoy for this node, its bootstrap written to the config dir."""
    binary = find_envoy(settings.envoy_bin)
    if binary is None:
        raise EnvoyError(
            f"envoy binary {settings.envoy_bin!r} not found; set NJ_ENVOY_BIN or use --no-envoy"
        )
    boot = write_bootstrap(settings.node, settings.config_dir, settings.admin_port)
    command = EnvoyCommand(
        str(binary),
        boot,
        settings.envoy_log_level,
        settings.envoy_args,
        JSON_LOG_FORMAT if settings.envoy_log_format == "json" else "",
        drain_time=settings.envoy_drain_time(),
    )
    return EnvoyProcess(
        command,
        AdminClient(settings.admin_port),
        listener=f"{settings.bind_address()}:{settings.listener_port}",
        on_restart=metrics.envoy_restarted,
        inotify_limit=inotify_limit,
    )


def _external_envoy(settings: FetcherSettings, confirm: bool) -> Proxy | None:
    """--no-envoy: a bootstrap for the Envoy of the other container; its admin API if asked."""
    path = write_bootstrap(settings.node, settings.config_dir, settings.admin_port)
    log.info("envoy.bootstrap_written", path=str(path), admin_port=settings.admin_port)
    return ExternalEnvoy(AdminClient(settings.admin_port)) if confirm else None


def _runner(settings: FetcherSettings, fetcher: Fetcher, envoy: Proxy | None) -> Runner:
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
@click.option(
    "--envoy-admin",
    is_flag=True,
    help="with --no-envoy: confirm each swap through the other Envoy's admin API "
    "(127.0.0.1:NJ_ADMIN_PORT, the port its bootstrap gets)",
)
@click.option("--poll-interval", type=float, help="seconds between polls [NJ_POLL_INTERVAL, 10]")
@expected_errors
def run(no_envoy: bool, envoy_admin: bool, **flags: Any) -> None:
    """Poll, apply new versions, and supervise Envoy until SIGTERM/SIGINT (then exit 0).

    Envoy starts at once from the last release on disk; with none, it starts when the first
    bundle arrives. Each swap is confirmed through Envoy's admin API or rolled back.

    With --no-envoy (Envoy in another container on a shared volume) the fetcher writes
    bootstrap.json for that Envoy and world-readable files; with --envoy-admin it confirms each
    swap through that Envoy's admin API on 127.0.0.1:NJ_ADMIN_PORT.

    \b
    Example:
      nightjar-fetcher run --bucket my-mesh-bucket --node fish.service.local/tuna/blue \\
          --config-dir /var/run/nightjar --listener-port 15001
      nightjar-fetcher run --no-envoy --envoy-admin --node fish.service.local/gateway
    """
    if envoy_admin and not no_envoy:
        raise SettingsError("--envoy-admin goes with --no-envoy (a supervised Envoy is asked)")
    settings = load_settings(flags)
    configure_logging(settings.log_level, settings.log_format)
    prepare_config_dir(settings.config_dir)
    metrics = _metrics(settings)
    limit = read_instance_limit()
    envoy = _external_envoy(settings, envoy_admin) if no_envoy else _envoy(settings, metrics, limit)
    fetcher = Fetcher.from_dir(
        settings,
        _store(settings),
        envoy,
        metrics=metrics,
        verifier=_verifier(settings),
        inotify_limit=limit,
    )
    runner = _runner(settings, fetcher, envoy)
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
    prepare_config_dir(settings.config_dir)
    store = _store(settings)
    limit = read_instance_limit()
    step = Fetcher.from_dir(
        settings, store, verifier=_verifier(settings), inotify_limit=limit
    ).poll_once()
    if step.result in ("applied", "unchanged"):
        click.echo(f"{step.result} {step.version} in {settings.config_dir / 'current'}")
        return
    raise FetcherError(once_failure(step, store.location()))


def once_failure(step: Step, location: str) -> str:
    """The one sentence ``once`` exits with when nothing was put in place."""
    if step.result == "missing":
        return (
            f"no manifest under {location} — is NJ_PREFIX right? (or nothing was published "
            "yet: run the configurator first)"
        )
    if step.version is None:
        return f"cannot read the manifest under {location}: {step.detail}"
    return f"version {step.version} not applied: {step.detail}"


def _config_dir_option(fn: Any) -> Any:
    return click.option(
        "--config-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="the fetcher's config dir [NJ_CONFIG_DIR, default /var/run/nightjar]",
    )(fn)


def _read_state(config_dir: Path) -> FetcherState:
    if not (config_dir / "state.json").is_file():
        raise FetcherError(f"no fetcher state in {config_dir}; is NJ_CONFIG_DIR the config dir?")
    return load_state(config_dir / "state.json")


def _dir_settings(flags: dict[str, Any]) -> FetcherSettings:
    """Settings for the commands that only read the config dir (no node or bucket needed)."""
    return build_settings(FetcherSettings, flags)


@main.command()
@_config_dir_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@expected_errors
def status(as_json: bool, **flags: Any) -> None:
    """Show what the fetcher applied, its last poll and error, and versions marked bad.

    Exits 1 when the last poll failed or the newest version was rejected.

    \b
    Example:
      nightjar-fetcher status --config-dir /var/run/nightjar --json
    """
    state = _read_state(_dir_settings(flags).config_dir)
    if as_json:
        click.echo(json.dumps(state.model_dump(mode="json"), indent=2))
    else:
        _print_status(state)
    if state.last_poll == "error" or state.last_release in ("rejected", "rolled_back"):
        raise click.exceptions.Exit(1)


@main.command()
@_config_dir_option
@click.option(
    "--max-poll-age", type=float, help="seconds a good poll may be old [NJ_HEALTH_MAX_POLL_AGE]"
)
@click.option("--admin-port", type=int, help="Envoy admin port [NJ_ADMIN_PORT, 9901]")
@expected_errors
def health(**flags: Any) -> None:
    """Exit 0 only when this node serves the manifest's current version through a live Envoy.

    Fails (exit 1, one line per reason) when the last successful poll is older than
    NJ_HEALTH_MAX_POLL_AGE, the newest version was rejected or rolled back, the applied version
    is not the manifest's, or the supervised Envoy is not LIVE or did not confirm it. This is
    the command for the task definition's container healthCheck.

    \b
    Example:
      nightjar-fetcher health --config-dir /var/run/nightjar
    """
    settings = _dir_settings({"health_max_poll_age": flags.pop("max_poll_age"), **flags})
    state = _read_state(settings.config_dir)
    release = ReleaseDir(settings.config_dir)
    live = AdminClient(settings.admin_port).ready() if state.supervised else None
    problems = judge_health(
        HealthInput(
            state,
            heartbeat_age(release.heartbeat_path, time.time()),
            settings.health_max_poll_age,
            live,
        )
    )
    if not problems:
        click.echo(f"healthy: serving {state.applied_version}")
        return
    click.echo("unhealthy: " + "; ".join(problems))
    raise click.exceptions.Exit(1)


def _print_status(state: FetcherState) -> None:
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
        ("manifest version", state.manifest_version or "-"),
        (
            "newest tried",
            f"{state.last_release_version} ({state.last_release})" if state.last_release else "-",
        ),
        ("bad versions", ", ".join(state.bad_versions) or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
