"""Entry point of the `cmsearch` command; each command group lives in its own module."""
from __future__ import annotations

import click

from . import cmd_engine, cmd_index, cmd_models
from . import cmd_ingest
from . import cmd_eval
from . import cmd_events
from . import cmd_search
from . import cmd_suggest
from . import cmd_demo
from . import cmd_train
from . import cmd_pipelines


@click.group()
@click.version_option(package_name="cmsearch")
def cli() -> None:
    """Cross-modal product search on OpenSearch: engine, models, index, ingest, search, eval."""


cli.add_command(cmd_engine.engine)
cli.add_command(cmd_index.index)
cli.add_command(cmd_models.models)
cli.add_command(cmd_ingest.ingest)
cli.add_command(cmd_search.search)
cli.add_command(cmd_suggest.suggest)
cli.add_command(cmd_demo.demo)
cli.add_command(cmd_eval.eval_cmd)
cli.add_command(cmd_eval.tune)
cli.add_command(cmd_eval.judgments)
cli.add_command(cmd_events.events)
cli.add_command(cmd_train.train)
cli.add_command(cmd_pipelines.pipelines)


def main() -> None:
    cli(prog_name="cmsearch")


if __name__ == "__main__":
    main()
