"""`cmsearch index create|delete|stats`: the product index from `mappings/`."""
from __future__ import annotations

import json
from pathlib import Path

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from mappings import MappingError, VectorDims
from models.manifest import ManifestError, default_models_dir, load_manifest
from plugin_ingest.index_admin import IndexExistsError, create_product_index, delete_index, index_stats

from .options import connection_options, fail


@click.group()
def index() -> None:
    """The product index."""


@index.command()
@click.argument("name")
@click.option("--models", "models_dir", type=click.Path(path_type=Path), default=None,
              help="Model directory whose manifest gives the vector dims (default: the user cache).")
@click.option("--recreate", is_flag=True, help="Delete the index first if it exists.")
@click.option("--shards", default=1, show_default=True)
@click.option("--replicas", default=0, show_default=True)
@connection_options
def create(conn, name: str, models_dir: Path | None, recreate: bool, shards: int, replicas: int) -> None:
    """Create the product index NAME with vector dims from the model manifest."""
    try:
        dims = VectorDims.from_manifest(load_manifest(models_dir or default_models_dir()))
        create_product_index(conn.client(), name, dims, recreate=recreate, shards=shards, replicas=replicas)
    except (ManifestError, MappingError, IndexExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    click.echo(f"created {name} (shared vectors {dims.shared}-d, image features {dims.image_feature}-d)")


@index.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def delete(conn, name: str, yes: bool) -> None:
    """Delete the index NAME."""
    if not yes:
        click.confirm(f"delete index {name!r}?", abort=True)
    try:
        gone = delete_index(conn.client(), name)
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    click.echo(f"deleted {name}" if gone else f"no index {name}")


@index.command()
@click.argument("name")
@connection_options
def stats(conn, name: str) -> None:
    """Product count, size and vector dims of NAME."""
    try:
        click.echo(json.dumps(index_stats(conn.client(), name), indent=2, ensure_ascii=False))
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
