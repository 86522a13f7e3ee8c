"""Click options shared by the commands that talk to a cluster."""
from __future__ import annotations

import functools

import click

from engine.client import ConnectionSettings, NoCluster, NoClusterError
from engine.urls import redact_urls


def connection_options(fn):
    """--url / --insecure / --ca-certs; user and password come from OPENSEARCH_USER / OPENSEARCH_PASSWORD.

    Without --url (or OPENSEARCH_URL) the command talks to the running local node; when it is
    not running, the command gets a :class:`NoCluster` and stops with the reason at its first
    cluster call (so a dry run, which needs none, still works).
    """

    @click.option("--url", envvar="OPENSEARCH_URL", default=None,
                  help="Cluster URL (default: the running local node; see `cmsearch engine start`). "
                       "Basic auth from OPENSEARCH_USER / OPENSEARCH_PASSWORD.")
    @click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (verification is on by default).")
    @click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), default=None,
                  envvar="OPENSEARCH_CA_CERTS", help="CA bundle for TLS verification.")
    @functools.wraps(fn)
    def wrapper(*args, url, insecure, ca_certs, **kwargs):
        try:
            conn = ConnectionSettings.resolve(url, insecure=insecure, ca_certs=ca_certs)
        except NoClusterError as exc:
            conn = NoCluster(str(exc))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            return fn(*args, conn=conn, **kwargs)
        except NoClusterError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def fail(conn: ConnectionSettings | NoCluster | None, exc: BaseException) -> "click.ClickException":
    """A ClickException whose message has no credentials in it."""
    text = f"{type(exc).__name__}: {exc}"
    return click.ClickException(conn.redact(text) if conn else redact_urls(text))
