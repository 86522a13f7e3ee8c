"""`cmsearch events load` and `cmsearch events purge`: thin shells over :mod:`evaluation.events`."""
from __future__ import annotations

from pathlib import Path

import click
from opensearchpy.exceptions import NotFoundError, OpenSearchException, TransportError

from evaluation import events as ev
from evaluation.event_privacy import SECRET_ENV, EventScrubber, PrivacyError
from evaluation.index_util import BulkWriteError, IndexMismatch

from .options import connection_options, fail


@click.group("events")
def events() -> None:
    """User-behaviour events (searches, impressions, clicks)."""


@events.command("load")
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_name", default=ev.DEFAULT_INDEX, show_default=True, help="Events index.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"File holding the secret that user ids are pseudonymized with (default: ${SECRET_ENV}). "
                   "Without a secret, user ids are not stored.")
@connection_options
def load_events(conn, events_file, index_name, secret_file):
    """Validate EVENTS_FILE (JSON lines, see evaluation/events.py) and add it to the events index.

    User ids are stored as keyed pseudonyms (HMAC-SHA256 under the secret), never as given;
    IP addresses are not stored.
    """
    try:
        scrubber = EventScrubber.from_environment(secret_file)
    except PrivacyError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        loaded = ev.read_events(events_file)
        n = ev.write_events(conn.client(), loaded, index_name, scrubber)
    except ev.EventError as exc:
        raise click.UsageError(str(exc)) from None
    except (IndexMismatch, BulkWriteError) as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    if scrubber.counts.ids_dropped:
        click.echo(f"warning: {SECRET_ENV} is not set, so {scrubber.counts.ids_dropped} user id(s) were not stored; "
                   "set it (or --secret-file) to a secret of at least 16 random bytes to keep them as "
                   "pseudonyms", err=True)
    privacy = scrubber.counts.summary()
    click.echo(f"added {n} events to {index_name}" + (f" ({privacy})" if privacy else ""))


@events.command("purge")
@click.option("--older-than", "older_than", required=True,
              help="Delete events older than this period: a number and h, d or w (e.g. 90d).")
@click.option("--index", "index_name", default=ev.DEFAULT_INDEX, show_default=True, help="Events index.")
@click.option("--dry-run", is_flag=True, help="Count the events that would be deleted; delete nothing.")
@connection_options
def purge(conn, older_than, index_name, dry_run):
    """Delete the events whose timestamp is older than --older-than (the retention period); nothing else."""
    try:
        period = ev.parse_period(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        n, cutoff = ev.purge_events(conn.client(), index_name, period, dry_run=dry_run)
    except NotFoundError:
        raise click.ClickException(f"events index {index_name!r} does not exist") from None
    except ev.EventError as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    stamp = cutoff.strftime("%Y-%m-%d %H:%M:%SZ")
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {n} events older than {older_than} (before {stamp}) from {index_name}")
