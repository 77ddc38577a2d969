"""``nightjar-configurator``: the process that scans Cloud Map and publishes bundles."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import click

from configurator.alarms import CloudWatchAlarms, make_cloudwatch_client
from configurator.cycle import Configurator, Retention, Safety
from configurator.discovery import CloudMapDiscovery, make_cloudmap_client
from configurator.metrics import Metrics, serve_metrics
from configurator.render import TemplateLibrary
from configurator.report import CycleReport
from configurator.settings import ConfiguratorSettings
from configurator.validate import EnvoyValidator
from shared import __version__
from shared.aws import CONFIGURATOR, make_kms_client, make_s3_client
from shared.cli import build_settings, expected_errors
from shared.envoy_bin import find_envoy
from shared.logs import configure_logging, get_logger
from shared.s3_store import S3BundleStore
from shared.signals import stop_on_signals
from shared.signing import KmsSigner

log = get_logger(__name__)

EXIT_FAILED = 1
EXIT_FROZEN = 3


def _options(fn: Any) -> Any:
    options = [
        click.option(
            "--namespace",
            "namespaces",
            multiple=True,
            help="Cloud Map namespace: name, id:<id> or ARN (repeatable) [NJ_NAMESPACES]",
        ),
        click.option("--bucket", help="S3 bucket of the bundle store [NJ_BUCKET]"),
        click.option("--prefix", help="key prefix in the bucket [NJ_PREFIX, default nightjar]"),
        click.option(
            "--templates-dir",
            type=click.Path(file_okay=False),
            help="template override directory [NJ_TEMPLATES_DIR]",
        ),
        click.option(
            "--metrics-port", type=int, help="serve Prometheus /metrics [NJ_METRICS_PORT]"
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_settings(**flags: Any) -> ConfiguratorSettings:
    """Settings from the environment with the given flags on top; SettingsError if unusable."""
    if flags.get("namespaces"):
        flags["namespaces"] = list(flags["namespaces"])
    settings = build_settings(ConfiguratorSettings, flags)
    settings.require_bucket()
    settings.require_namespaces()
    return settings


def build_configurator(settings: ConfiguratorSettings, metrics: Metrics) -> Configurator:
    """Wire the real clients and components for ``settings``."""
    return Configurator(
        namespaces=settings.namespaces,
        store=S3BundleStore(make_s3_client(CONFIGURATOR), settings.bucket, settings.prefix),
        discovery=CloudMapDiscovery(make_cloudmap_client()),
        templates=TemplateLibrary.from_dir(settings.templates_dir),
        validator=EnvoyValidator(find_envoy(settings.envoy_bin)),
        retention=Retention(settings.keep_versions, settings.grace),
        metrics=metrics,
        safety=Safety(
            max_object_bytes=settings.max_object_bytes,
            check_every=settings.check_every,
            signer=KmsSigner(make_kms_client(), settings.signing_key)
            if settings.signing_key
            else None,
        ),
        alarms=CloudWatchAlarms(make_cloudwatch_client()),
    )


def _start(flags: dict[str, Any]) -> tuple[ConfiguratorSettings, Configurator]:
    settings = load_settings(**flags)
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics()
    if settings.metrics_port is not None:
        serve_metrics(
            metrics, settings.metrics_host, settings.metrics_port, settings.health_max_age
        )
        log.info("metrics.listening", host=settings.metrics_host, port=settings.metrics_port)
    return settings, build_configurator(settings, metrics)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar-configurator")
def main() -> None:
    """Scan Cloud Map, render every node's Envoy files and publish them to S3.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar-configurator once --namespace fish.service.local
    """


@main.command()
@_options
@expected_errors
def once(**flags: Any) -> None:
    """Run one cycle and exit: 0 published or unchanged, 3 frozen, 1 failed.

    \b
    Example:
      nightjar-configurator once --bucket my-mesh-bucket --namespace fish.service.local
    """
    _, configurator = _start(flags)
    report = configurator.run_cycle()
    click.echo(_summary(report))
    if report.outcome == "failed":
        raise click.exceptions.Exit(EXIT_FAILED)
    if report.outcome == "frozen":
        raise click.exceptions.Exit(EXIT_FROZEN)


@main.command()
@_options
@click.option("--interval", type=float, help="seconds between cycles [NJ_INTERVAL, default 30]")
@expected_errors
def run(**flags: Any) -> None:
    """Run cycles every NJ_INTERVAL seconds until SIGTERM or SIGINT.

    A signal lets the running cycle finish (a cycle never publishes half a version) and exits 0.

    \b
    Example:
      NJ_NAMESPACES=fish.service.local NJ_BUCKET=my-mesh-bucket nightjar-configurator run
    """
    settings, configurator = _start(flags)
    stop = stop_on_signals(log, "configurator.stopping")
    log.info(
        "configurator.started",
        namespaces=settings.namespaces,
        bucket=settings.bucket,
        prefix=settings.prefix,
        interval=settings.interval,
    )
    while not stop.is_set():
        configurator.run_cycle()
        stop.wait(settings.interval)
    log.info("configurator.stopped")


@main.command()
@click.option("--metrics-port", type=int, help="the running configurator's [NJ_METRICS_PORT]")
@expected_errors
def health(**flags: Any) -> None:
    """Exit 0 when the running configurator's last good cycle is recent (NJ_HEALTH_MAX_AGE).

    Asks /healthz on the metrics port of the process in this container; use it as the ECS
    container health check.

    \b
    Example:
      NJ_METRICS_PORT=9100 nightjar-configurator health
    """
    settings = build_settings(ConfiguratorSettings, flags)
    port = settings.require_metrics_port()
    host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "") else settings.metrics_host
    ok, text = ask_health(host, port)
    click.echo(text)
    if not ok:
        raise click.exceptions.Exit(EXIT_FAILED)


def ask_health(host: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """GET /healthz; (healthy, its sentence). Unreachable is unhealthy, with what to check."""
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return True, f"healthy: {response.read().decode().strip()}"
    except urllib.error.HTTPError as err:
        return False, f"unhealthy: {err.read().decode().strip()}"
    except (OSError, urllib.error.URLError) as err:
        return False, (
            f"unhealthy: no configurator answers on {url} ({err}); is it running with "
            "NJ_METRICS_PORT set?"
        )


def _summary(report: CycleReport) -> str:
    if report.outcome == "failed":
        return f"cycle failed, nothing published: {report.error}"
    if report.outcome == "frozen":
        return (
            f"manifest is frozen at {report.version} (by {report.frozen_by}); nothing "
            "published. Run 'nightjar unfreeze' to let the configurator publish again."
        )
    return (
        f"{report.outcome} {report.version}: {len(report.changed_nodes)} node(s) changed, "
        f"{len(report.problems)} problem(s), {report.calls} Cloud Map call(s), "
        f"{report.seconds:.2f}s"
    )
