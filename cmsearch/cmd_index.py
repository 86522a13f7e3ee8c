"""`cmsearch index create|delete|stats`: the product index from `mappings/`."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import click
from opensearchpy.exceptions import AuthorizationException, OpenSearchException, TransportError

from engine.layout import index_layout
from mappings import QUANTIZATIONS, MappingError, VectorOptions
from models.heads_registry import HeadsNotFound, resolve_heads
from models.manifest import default_models_dir
from models.space import Space, SpaceError
from plugin_ingest.index_admin import IndexExistsError, create_product_index, delete_index, index_stats
from query_builder.pipeline_admin import put_profile_pipelines

from .options import connection_options, fail
from .space_options import heads_option, models_option


def vector_options(fn):
    """``--quantize`` and ``--image-feature/--no-image-feature``: how a new index stores its vectors
    (the command gets ``vectors``: a :class:`mappings.VectorOptions`, or None when neither was given)."""
    @functools.wraps(fn)
    def wrapper(*args, quantize: str | None, image_feature: bool | None, **kwargs):
        vectors = None if quantize is None and image_feature is None else VectorOptions(
            quantization=quantize or "none", image_feature=True if image_feature is None else image_feature)
        return fn(*args, vectors=vectors, **kwargs)

    wrapper = click.option("--image-feature/--no-image-feature", "image_feature", default=None,
                           help="Keep each image's raw backbone feature (the largest vector) for image -> image "
                                "search (default); without it photo searches use the shared-space vectors.")(wrapper)
    return click.option("--quantize", type=click.Choice(QUANTIZATIONS), default=None,
                        help="sq: int8 scalar quantization of every vector field (Lucene engine), about a "
                             "quarter of the vector memory (default: none, float32).")(wrapper)


@click.group()
def index() -> None:
    """The product index."""


@index.command()
@click.argument("name")
@models_option
@heads_option("<models>/heads when it holds heads")
@click.option("--image-weight", type=float, default=None, help="Fusion weight of the image vector (default: heads manifest, else 0.5).")
@click.option("--text-weight", type=float, default=None, help="Fusion weight of the text vector (default: heads manifest, else 0.5).")
@click.option("--recreate", is_flag=True, help="Delete the index first if it exists.")
@click.option("--shards", type=click.IntRange(min=1), default=None,
              help="Primary shards (default: 1).")
@click.option("--replicas", type=click.IntRange(min=0), default=None,
              help="Replicas of each shard (default: 0 on a one-node cluster, 1 on two or more data nodes).")
@vector_options
@connection_options
def create(conn, name: str, models_dir: Path | None, heads_dir: str | None, image_weight: float | None,
           text_weight: float | None, recreate: bool, shards: int | None, replicas: int | None,
           vectors: VectorOptions | None) -> None:
    """Create the product index NAME for the space of these models and heads (recorded in its _meta,
    with the vector options), and the shipped profiles' search pipelines when this user may create them.

    Shards and replicas not given are chosen for the cluster (see engine/layout.py)."""
    try:
        mdir = models_dir or default_models_dir()
        space = Space.load(mdir, resolve_heads(mdir, heads_dir), strict=True, w_img=image_weight, w_txt=text_weight)
        client = conn.client()
        layout = index_layout(client, shards, replicas)
        if layout.warning:
            click.echo(f"warning: {layout.warning}", err=True)
        vectors = vectors or VectorOptions()
        create_product_index(client, name, space.dims, recreate=recreate, shards=layout.shards,
                             replicas=layout.replicas, space=space.identity, vectors=vectors)
        try:
            put_profile_pipelines(client)
        except AuthorizationException:   # a least-privilege ingest user: pipelines are an admin's step
            click.echo("note: search pipelines not put (this user may not create them); hybrid searches fuse "
                       "client-side until an admin runs `cmsearch pipelines put`", err=True)
    except (SpaceError, HeadsNotFound, MappingError, IndexExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    click.echo(f"created {name} ({layout.describe()}; {vectors.describe()}) for {space.identity.describe()}")


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
    """Product count, size, vector dims and the recorded vector space of NAME."""
    try:
        stats = index_stats(conn.client(), name)
        if stats["space"] is None:
            stats["space_note"] = ("this index records no vector space (made before indexes recorded theirs); "
                                   "re-ingest it with --recreate so searches can check their space")
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
    except MappingError as exc:
        raise click.ClickException(f"{name}: {exc}") from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
