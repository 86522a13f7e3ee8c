"""`cmsearch ingest CATALOG --index NAME`: load a product catalog (a thin shell over plugin_ingest)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from .cmd_index import vector_options
from .options import connection_options, fail


def _part(ctx, param, value):
    """``--part i/N`` -> a :class:`plugin_ingest.parts.Part`, or a usage error saying why not."""
    from plugin_ingest.parts import PartError, parse_part

    if value is None:
        return None
    try:
        return parse_part(value)
    except PartError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_name", required=True, help="Target index (created from mappings/ with --create).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "tsv"]), default=None,
              help="Catalog format (default: from the file extension).")
@click.option("--models", "models_dir", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--heads", "heads_dir", default=None,
              help="Trained heads directory (default: <models>/heads when it has a manifest; 'none' for no heads).")
@click.option("--create", is_flag=True, help="Create the index if it does not exist.")
@click.option("--recreate", is_flag=True, help="Delete and create the index first (forgets any checkpoint).")
@click.option("--ocr", is_flag=True, help="Read text off product photos (rapidocr) into the OCR text field.")
@click.option("--batch-size", default=32, show_default=True, help="Products per encoder batch.")
@click.option("--batch-images", default=128, show_default=True,
              help="Images per encoder batch: a batch closes at this many images even with fewer products.")
@click.option("--image-errors", type=click.Choice(["keep", "reject"]), default="keep", show_default=True,
              help="A product whose image cannot be fetched or decoded: index it without that image, or reject it.")
@click.option("--delete-missing", is_flag=True, help="Delete indexed products that are not in the catalog.")
@click.option("--force", is_flag=True, help="Re-encode and rewrite every product, even unchanged ones.")
@click.option("--force-merge/--no-force-merge", "force_merge", default=None,
              help="After the load, merge the index into one segment (faster k-NN search). "
                   "Default: only when this load created the index.")
@click.option("--dry-run", is_flag=True,
              help="Validate, tokenize and decode every image, and report; no models, nothing written but the rejects file.")
@click.option("--accept-rejects", is_flag=True, help="Exit 0 even when records were rejected.")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rejects file (default: <catalog>.rejects.jsonl; with --part 2/3: <catalog>.part-2-of-3.rejects.jsonl).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (default: <catalog>.<index>.checkpoint.json; with --part, named by the part too).")
@click.option("--no-resume", is_flag=True, help="Ignore an existing checkpoint and start from the top.")
@click.option("--aliases", "aliases_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Brand / category alias file (JSON, see analysis.vocabulary).")
@click.option("--image-weight", type=float, default=None, help="Fusion weight of the image vector (default: heads manifest, else 0.5).")
@click.option("--text-weight", type=float, default=None, help="Fusion weight of the text vector (default: heads manifest, else 0.5).")
@click.option("--max-image-mb", type=float, default=20.0, show_default=True, help="Size cap of one image.")
@click.option("--image-timeout", type=float, default=20.0, show_default=True,
              help="Read timeout of one image download, seconds (connect timeout: 5 s).")
@click.option("--allow-dir", "allow_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A directory local images may be read from besides the catalog's own (repeatable).")
@click.option("--allow-private-urls", is_flag=True,
              help="Fetch image URLs on loopback, private and link-local addresses too (refused by default).")
@click.option("--allow-net", "allow_nets", multiple=True,
              help="A private network (CIDR) image URLs may be fetched from, without allowing all (repeatable).")
@click.option("--threads", type=int, default=None, help="onnxruntime threads per encoder (default: one per core).")
@click.option("--decode-workers", type=int, default=2, show_default=True, help="Threads fetching and decoding images.")
@click.option("--bulk-docs", type=int, default=256, show_default=True, help="Documents per bulk request (at most).")
@click.option("--bulk-mb", type=float, default=8.0, show_default=True, help="Megabytes per bulk request (at most).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@click.option("--progress-every", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="When stderr is not a terminal (a log file), print a progress line every this many seconds.")
@click.option("--part", callback=_part, default=None, metavar="I/N",
              help="Load only part I of N (numbered from 1; a product's part is the SHA-256 of its id modulo N), "
                   "so N workers load one catalog into one index; each part has its own checkpoint and rejects "
                   "file, and --delete-missing deletes only the part's own ids.")
@click.option("--wait", is_flag=True,
              help="If another load holds this checkpoint or rejects file, wait for it instead of refusing.")
@vector_options
@connection_options
def ingest(conn, catalog: Path, index_name: str, fmt, models_dir, heads_dir, create, recreate, ocr, batch_size,
           batch_images,
           image_errors, delete_missing, force, force_merge, dry_run, accept_rejects, rejects_path, checkpoint_path, no_resume,
           aliases_path, image_weight, text_weight, max_image_mb, image_timeout, allow_dirs, allow_private_urls,
           allow_nets, threads, decode_workers,
           bulk_docs, bulk_mb, as_json, no_progress, progress_every, part, wait, vectors) -> None:
    """Load CATALOG (JSONL or CSV, schema in plugin_ingest/SCHEMA.md) into the product index.

    Every record ends up indexed, unchanged (skipped by content hash) or rejected; rejects go
    to the rejects file with their line and reason, and the exit status is 1 when there are
    any (unless --accept-rejects).  A load stopped by Ctrl-C, SIGTERM or SIGHUP settles what it
    holds, prints its partial summary (as JSON with --json) and exits 130, 143 or 129; the same
    command run again continues from its checkpoint.  One load at a time uses a checkpoint and
    a rejects file: a second one refuses, naming the running one, or waits with --wait.

    With --part I/N, N loads (on N machines, each with the same catalog) share the work: each
    loads the products of its part and skips the others' (counted apart in its summary).
    Parts are not merged into one segment by default: when all are done, run one again with
    --force-merge.
    """
    from analysis import AliasError, AliasTable
    from plugin_ingest.catalog import CatalogError
    from models.heads_registry import HeadsNotFound, resolve_heads
    from models.manifest import default_models_dir
    from models.ocr import OcrReader
    from models.space import Space, SpaceError
    from plugin_ingest.fetch import FetchPolicy
    from plugin_ingest.ingestor import IngestError, IngestInterrupted, IngestOptions, Ingestor
    from plugin_ingest.signals import exit_status, stop_on_signals

    try:
        aliases = AliasTable.load(aliases_path) if aliases_path else None
    except AliasError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        options = IngestOptions(
            index=index_name, batch_size=batch_size, batch_images=batch_images, image_errors=image_errors, ocr=ocr,
            delete_missing=delete_missing, dry_run=dry_run, force=force, force_merge=force_merge, create=create, recreate=recreate,
            rejects_path=rejects_path, checkpoint_path=checkpoint_path, resume=not no_resume,
            decode_workers=decode_workers, bulk_docs=bulk_docs, bulk_bytes=int(bulk_mb * 1024 * 1024),
            max_image_bytes=int(max_image_mb * 1024 * 1024), read_timeout=image_timeout, aliases=aliases,
            fetch_policy=FetchPolicy(allow_dirs=allow_dirs, allow_private_urls=allow_private_urls,
                                     allow_networks=allow_nets),
            fmt=fmt, progress=not no_progress and sys.stderr.isatty(),
            progress_every=None if no_progress or sys.stderr.isatty() else progress_every, wait=wait, part=part,
            vectors=vectors)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    try:
        with stop_on_signals():
            try:
                encoders = None
                client = None
                if not dry_run:
                    client = conn.client()  # first: no cluster, no models loaded for nothing
                    mdir = models_dir or default_models_dir()
                    encoders = Space.load(mdir, resolve_heads(mdir, heads_dir), strict=True, threads=threads,
                                          w_img=image_weight, w_txt=text_weight).open_all()
                    log(f"models: {encoders.describe()}")
                ocr_reader = OcrReader() if ocr else None
                ingestor = Ingestor(catalog, options, client=client, encoders=encoders, ocr_reader=ocr_reader,
                                    redact=conn.redact, log=log)
                report = ingestor.run()
            except KeyboardInterrupt as exc:   # before the load started (loading the models)
                raise IngestInterrupted("stopped before the load started; nothing was loaded",
                                        signum=getattr(exc, "signum", None)) from None
    except IngestInterrupted as exc:
        if exc.report is not None:
            if as_json:
                click.echo(json.dumps(exc.report.to_dict(), indent=2, ensure_ascii=False))
            else:
                click.echo(exc.report.table(), err=True)
        click.echo(conn.redact(str(exc)), err=True)
        click.get_current_context().exit(exit_status(exc.signum) if exc.signum is not None else 130)
    except (IngestError, SpaceError, HeadsNotFound, CatalogError) as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None

    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else report.table())
    if report.counts.rejected and not accept_rejects:
        click.echo(f"{report.counts.rejected} record(s) rejected (see {report.rejects_path}); "
                   "pass --accept-rejects to exit 0 anyway", err=True)
        click.get_current_context().exit(1)
