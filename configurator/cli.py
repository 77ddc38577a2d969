"""``nightjar-configurator``: the process that scans Cloud Map and publishes bundles."""

from __future__ import annotations

import click

from shared import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar-configurator")
def main() -> None:
    """Scan Cloud Map, render every node's Envoy files and publish them to S3.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar-configurator once --namespace fish.service.local
    """
