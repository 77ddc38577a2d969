"""``nightjar-fetcher``: the sidecar that keeps one node's Envoy files current."""

from __future__ import annotations

import click

from shared import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar-fetcher")
def main() -> None:
    """Poll the bundle store and keep this node's Envoy configuration current.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar-fetcher run --node fish.service.local/gateway
    """
