"""Click options shared by the commands that talk to a cluster."""
from __future__ import annotations

import functools

import click

from engine.client import ConnectionSettings, NoCluster, NoClusterError
from engine.urls import redact_urls


def connection_options(fn):
    """--url / --insecure / --ca-certs / --user / --password-file; user and password also come from the
    URL's user-info or OPENSEARCH_USER / OPENSEARCH_PASSWORD (never a password on the command line).

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
    @click.option("--user", default=None,
                  help="Basic-auth user (default: the URL's user-info, else $OPENSEARCH_USER).")
    @click.option("--password-file", type=click.Path(dir_okay=False), default=None,
                  envvar="OPENSEARCH_PASSWORD_FILE",
                  help="File whose first line is the password (else $OPENSEARCH_PASSWORD); never on the command line.")
    @functools.wraps(fn)
    def wrapper(*args, url, insecure, ca_certs, user, password_file, **kwargs):
        try:
            conn = ConnectionSettings.resolve(url, user=user, insecure=insecure, ca_certs=ca_certs,
                                              password_file=password_file)
        except NoClusterError as exc:
            conn = NoCluster(str(exc))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            return fn(*args, conn=conn, **kwargs)
        except NoClusterError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def hint(conn: ConnectionSettings | NoCluster | None, exc: BaseException | None) -> str | None:
    """What to fix when ``exc`` (or the engine error it was raised from) is a refused login, a
    refused action or a failed TLS handshake; None otherwise."""
    while exc is not None and isinstance(conn, ConnectionSettings):
        said = conn.describe_error(exc)
        if said:
            return said
        exc = exc.__cause__ or exc.__context__
    return None


def fail(conn: ConnectionSettings | NoCluster | None, exc: BaseException) -> "click.ClickException":
    """A ClickException whose message has no credentials in it, and says what to fix when the
    cluster refused the login, the action or the TLS handshake."""
    said = hint(conn, exc)
    if said:
        return click.ClickException(said)
    text = f"{type(exc).__name__}: {exc}"
    return click.ClickException(conn.redact(text) if conn else redact_urls(text))
