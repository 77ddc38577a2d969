"""``nightjar``: the operator CLI to inspect, compare, roll back and freeze bundles."""

from __future__ import annotations

import click

from shared import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightjar")
def main() -> None:
    """Inspect and steer the bundles the configurator published.

    \b
    Example:
      NJ_BUCKET=my-mesh-bucket nightjar status
    """
