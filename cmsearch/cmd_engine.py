"""`cmsearch engine start|stop|status`: the local node (or cluster of local nodes), and the health
of any cluster."""
from __future__ import annotations

import json

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from engine import EngineError, LocalEngine
from engine.node import CLUSTER_HEAP, MAX_NODES, SINGLE_HEAP, SINGLE_NODE_NAME
from engine.versions import ENGINE_VERSIONS
from engine.capabilities import detect
from engine.security import SecureNode, SecurityError
from query_builder import detect_fusion

from .options import connection_options, fail


@click.group()
def engine() -> None:
    """The local OpenSearch node (built from Maven Central on first use)."""


@engine.command()
@click.option("--nodes", type=click.IntRange(1, MAX_NODES), default=1, show_default=True,
              help="Nodes (JVMs) of one cluster on 127.0.0.1, each with its own data directory.")
@click.option("--heap", default=None, help=f"JVM heap per node (-Xms/-Xmx). Default: {SINGLE_HEAP} for one node, "
                                           f"{CLUSTER_HEAP} each for several.")
@click.option("--timeout", default=240.0, show_default=True, help="Seconds to wait for green.")
@click.option("--version", "version", default=None, metavar="|".join(ENGINE_VERSIONS),
              help="OpenSearch version to build and run (3.x needs Java 21+; it has k-NN but no neural-search, "
                   "so fusion runs client-side). Default: $CMSEARCH_ENGINE_VERSION, else the version of the "
                   "data already here, else 2.19.")
@click.option("--secure", is_flag=True,
              help="Run with the security plugin: TLS on HTTP and transport (a CA made here), internal users "
                   "admin, cmsearch-ingest, cmsearch-search, cmsearch-events with least-privilege roles.")
def start(nodes: int, heap: str | None, timeout: float, version: str | None, secure: bool) -> None:
    """Build (first time) and start the local node or cluster; prints its URL. What runs is reused;
    nodes of the cluster that are down are started again."""
    eng = LocalEngine(heap=heap, nodes=nodes, version=version, secure=secure)
    try:
        url = eng.start(timeout=timeout, progress=lambda m: click.echo(m, err=True))
    except (EngineError, SecurityError) as exc:
        raise click.ClickException(str(exc)) from None
    if secure:
        sec = SecureNode(eng.state_dir)
        click.echo(f"TLS CA certificate: {sec.ca_file} (commands talking to this node use it by default)", err=True)
        click.echo(f"users and passwords: {sec.credentials_file} (readable by you only); pass them with "
                   "OPENSEARCH_USER and OPENSEARCH_PASSWORD or OPENSEARCH_PASSWORD_FILE", err=True)
    if nodes > 1:
        for st in eng.node_states():
            click.echo(f"{st.name:8} pid {st.pid}  {st.url}", err=True)
    click.echo(url)


@engine.command()
def stop() -> None:
    """Stop the local node, or every node of the local cluster, cleanly."""
    try:
        names = LocalEngine().stop_nodes()
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    if not names:
        click.echo("no local node was running")
    else:
        click.echo("stopped" if names == [SINGLE_NODE_NAME] else f"stopped {', '.join(names)}")


@engine.command()
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(conn, as_json: bool) -> None:
    """Health, nodes, version and working capabilities (knn, hybrid, rrf) of the cluster, and each
    local node (running or down)."""
    local = LocalEngine()
    states = local.node_states()
    out: dict = {"url": conn.url, "local_node_pid": local.pid()}
    try:
        client = conn.client()
        health = client.cluster.health()
        out["health"] = health["status"]
        out["number_of_nodes"] = health.get("number_of_nodes")
        out.update(detect(client, fusion_probe=detect_fusion).as_dict())
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    try:  # the node list is extra: a user without the monitor privilege still gets the rest
        out["cluster_nodes"] = [
            {"name": n.get("name"), "cluster_manager": n.get("cluster_manager") == "*",
             "roles": n.get("node.role"), "heap_percent": n.get("heap.percent")}
            for n in client.cat.nodes(format="json", h="name,node.role,cluster_manager,heap.percent")]
    except (OpenSearchException, TransportError, OSError):
        pass
    out["local_nodes"] = [{"name": st.name, "pid": st.pid, "url": st.url, "up": st.pid is not None}
                          for st in states]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for k, v in out.items():
        if k == "local_nodes":
            for st in v:
                click.echo(f"{'local node':16} {st['name']:14} "
                           + (f"pid {st['pid']}  {st['url']}" if st["up"] else "down"))
        elif k == "cluster_nodes":
            for n in v:
                click.echo(f"{'cluster node':16} {n['name']:14} roles {n['roles']}  heap {n['heap_percent']}%"
                           + ("  (cluster manager)" if n["cluster_manager"] else ""))
        else:
            click.echo(f"{k:16} {v}")
