"""Entry point of the `cmsearch` command; each command group lives in its own module."""
from __future__ import annotations

import click

from . import cmd_engine, cmd_index, cmd_models


@click.group()
@click.version_option(package_name="cmsearch")
def cli() -> None:
    """Cross-modal product search on OpenSearch: engine, models, index, ingest, search, eval."""


cli.add_command(cmd_engine.engine)
cli.add_command(cmd_index.index)
cli.add_command(cmd_models.models)


def main() -> None:
    cli(prog_name="cmsearch")


if __name__ == "__main__":
    main()
