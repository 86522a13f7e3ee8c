"""`cmsearch pipelines put`: the search pipelines of the profiles, created by an admin."""
from __future__ import annotations

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from query_builder.pipeline_admin import put_profile_pipelines
from query_builder.profile import ProfileError

from .options import connection_options, fail


@click.group()
def pipelines() -> None:
    """Search pipelines (server-side hybrid fusion)."""


@pipelines.command("put")
@click.option("--profile", "profiles", multiple=True,
              help="Profile name or JSON file (repeatable; default: every shipped profile).")
@connection_options
def put(conn, profiles: tuple[str, ...]) -> None:
    """Create every search pipeline the profiles' hybrid searches can name, so that searchers
    that may not create pipelines (a read-only role) still fuse server-side."""
    try:
        done = put_profile_pipelines(conn.client(), profiles or None)
    except ProfileError as exc:
        raise click.UsageError(str(exc)) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    for name, reason in done.failed.items():
        click.echo(f"warning: profile {name}: pipelines not created ({conn.redact(reason)}); it fuses client-side",
                   err=True)
    click.echo(f"put {done.count} search pipelines for {', '.join(n for n in done.put if n not in done.failed)}")
