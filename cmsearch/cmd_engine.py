"""`cmsearch engine start|stop|status`: the local node, and the health of any cluster."""
from __future__ import annotations

import json

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from engine import EngineError, LocalEngine
from engine.capabilities import detect
from query_builder import detect_fusion

from .options import connection_options, fail


@click.group()
def engine() -> None:
    """The local OpenSearch node (built from Maven Central on first use)."""


@engine.command()
@click.option("--heap", default="1g", show_default=True, help="JVM heap (-Xms/-Xmx).")
@click.option("--timeout", default=240.0, show_default=True, help="Seconds to wait for green.")
def start(heap: str, timeout: float) -> None:
    """Build (first time) and start the local node; prints its URL. A running node is reused."""
    eng = LocalEngine(heap=heap)
    try:
        url = eng.start(timeout=timeout, progress=lambda m: click.echo(m, err=True))
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(url)


@engine.command()
def stop() -> None:
    """Stop the local node cleanly."""
    click.echo("stopped" if LocalEngine().stop() else "no local node was running")


@engine.command()
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(conn, as_json: bool) -> None:
    """Health, version and working capabilities (knn, hybrid, rrf) of the cluster."""
    local = LocalEngine()
    out: dict = {"url": conn.url, "local_node_pid": local.pid()}
    try:
        client = conn.client()
        out["health"] = client.cluster.health()["status"]
        out.update(detect(client, fusion_probe=detect_fusion).as_dict())
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            click.echo(f"{k:16} {v}")
