"""`cmsearch demo`: the whole product end to end on a registry-shipped data set."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the catalog, heads and rejects go (default: ~/.cache/cmsearch/demo).")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--url", envvar="OPENSEARCH_URL", default=None,
              help="Use this cluster instead of starting the local node.")
@click.option("--per-class", default=200, show_default=True, help="Products per Fashion-MNIST class.")
def demo(work_dir: Path | None, models_dir: Path | None, url: str | None, per_class: int) -> None:
    """Build models, start the local engine, make a demo catalog, train, ingest, search, evaluate."""
    from demo.fashion_catalog import DatasetMissing
    from demo.run import DemoConfig, run_demo
    from models.manifest import default_models_dir

    work_dir = work_dir or default_models_dir().parent / "demo"
    try:
        run_demo(DemoConfig(work_dir=work_dir, models_dir=models_dir, url=url, per_class=per_class),
                 log=lambda m: click.echo(m))
    except DatasetMissing as exc:
        raise click.ClickException(str(exc)) from None
