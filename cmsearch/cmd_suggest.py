"""`cmsearch suggest PREFIX [--kind title|brand|category] [--json]`, and `--refresh-popularity`: a thin shell."""
from __future__ import annotations

import json

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from query_builder import RequestError, SearchError, Searcher
from query_builder.suggest import KINDS

from .options import connection_options, fail


@click.command()
@click.argument("prefix", required=False)
@click.option("--index", "index_name", default="products", show_default=True, envvar="CMSEARCH_INDEX",
              help="Product index whose titles, brands and categories are suggested.")
@click.option("--size", default=10, show_default=True, help="Suggestions to show (1-100).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only these kinds (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
@click.option("--refresh-popularity", is_flag=True,
              help="Recount clicks per product in the events index and write them as suggestion weights.")
@click.option("--events-index", default="cmsearch-events", show_default=True, help="Events index (clicks).")
@connection_options
def suggest(conn, prefix: str | None, index_name: str, size: int, kinds: tuple[str, ...], as_json: bool,
            refresh_popularity: bool, events_index: str) -> None:
    """Complete PREFIX (Chinese, pinyin or pinyin initials) to product titles, brands and categories."""
    if not prefix and not refresh_popularity:
        raise click.UsageError("give a PREFIX to complete, or --refresh-popularity")
    try:
        client = conn.client()
        if refresh_popularity:
            from evaluation.popularity import click_counts, refresh_popularity as refresh

            counts = click_counts(client, events_index)
            n = refresh(client, index_name, counts)
            click.echo(f"popularity: {len(counts)} clicked products in {events_index}, {n} products of "
                       f"{index_name} updated")
        if not prefix:
            return
        found = Searcher(client, "bm25", index=index_name).suggest(prefix, size, kinds or KINDS)
    except RequestError as exc:
        raise click.UsageError(str(exc)) from None
    except SearchError as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], ensure_ascii=False, indent=2))
        return
    for s in found:
        click.echo(f"{s.kind:<9} {s.text}" + (f"  ({s.product_id})" if s.product_id else ""))
    if not found:
        click.echo("(no suggestions)")
