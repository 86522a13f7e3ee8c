"""`cmsearch eval`, `cmsearch tune`, `cmsearch judgments from-events`: thin shells over :mod:`evaluation`."""
from __future__ import annotations

from pathlib import Path

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from analysis import AliasError, AliasTable
from analysis.synonyms import SynonymError, SynonymTable
from evaluation import events as ev
from evaluation import results_index
from evaluation.click_model import ClickModelConfig, judgments_from_events
from evaluation.index_util import BulkWriteError, IndexMismatch
from evaluation.judgments import JudgmentError, load_judgments, write_srw, write_trec
from evaluation.metrics import DEFAULT_METRICS, parse_metrics
from evaluation.runner import EvalError, format_table, format_worst, new_run_id, run_profiles
from evaluation.search_adapter import SearchFactory
from evaluation.tune import SpaceError, default_space, format_report, load_space, tune as tune_profile, write_profile
from query_builder import ProfileError, SearchError, load_profile, shipped_profiles

from .options import connection_options, fail
from .space_options import echo_problems, open_space, space_options

STANDARD_PROFILES = ("bm25", "dense_text", "image", "hybrid_minmax", "hybrid_rrf", "hybrid_minmax_noboost")


def _models_options(fn):
    fn = click.option("--aliases", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                      help="Brand/category alias file (JSON, see analysis/vocabulary.py).")(fn)
    fn = click.option("--synonyms", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                      help="Synonym file (Solr format) for the lexical retriever, instead of the profiles' own.")(fn)
    fn = click.option("--ocr", is_flag=True, help="Read text off query photos (rapidocr).")(fn)
    fn = click.option("--no-models", is_flag=True, help="Load no encoders: only lexical retrieval can run.")(fn)
    return space_options(fn)


def _judgments_options(fn):
    fn = click.option("--limit", type=int, default=None, help="Only the first N queries (a quick look).")(fn)
    fn = click.option("--queries", "queries_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      default=None, help="Query file for a qrels file (default: queries.jsonl beside it).")(fn)
    fn = click.option("--judgments", "judgments_path", required=True, type=click.Path(exists=True, path_type=Path),
                      help="A folder with qrels.txt + queries.jsonl, a qrels file, or SRW judgment JSON.")(fn)
    fn = click.option("--index", "index_name", default="products", show_default=True, envvar="CMSEARCH_INDEX",
                      help="Product index to search.")(fn)
    return fn


def _factory(conn, index_name, models_dir, heads_dir, allow_other_space, no_models, ocr, aliases,
             synonyms=None) -> SearchFactory:
    try:
        table = AliasTable.load(aliases) if aliases else None
        syn = SynonymTable.load(synonyms) if synonyms else None
    except (AliasError, SynonymError) as exc:
        raise click.UsageError(str(exc)) from None
    client = conn.client()
    space, reader = (None, None) if no_models else open_space(client, index_name, models_dir, heads_dir, ocr=ocr)
    factory = SearchFactory(client, index_name, space, aliases=table, ocr=reader,
                            allow_other_space=allow_other_space, synonyms=syn)
    if space is not None:
        try:
            factory.searcher("bm25")   # the index's space is checked here, before any query is encoded
        except SearchError as exc:
            raise click.ClickException(conn.redact(str(exc))) from None
        echo_problems(space)
    return factory


def _load(judgments_path: Path, queries_file: Path | None, limit: int | None):
    try:
        js = load_judgments(judgments_path, queries_file)
    except JudgmentError as exc:
        raise click.UsageError(str(exc)) from None
    return js.head(limit) if limit else js


def _progress(profile: str, done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        click.echo(f"  {profile}: {done}/{total}", err=True)


@click.command("eval")
@_judgments_options
@click.option("--profile", "profiles", multiple=True,
              help="Profile to compare (repeatable): a shipped name or a JSON file. "
                   f"Default: {', '.join(STANDARD_PROFILES)}.")
@click.option("--metric", "metrics", multiple=True, help="Metric (repeatable), e.g. ndcg@10, recall@100, mrr, "
                                                        "precision@5. Default: ndcg@10 recall@10 recall@100 mrr.")
@click.option("--to-index", "to_index", is_flag=False, flag_value=results_index.DEFAULT_INDEX, default=None,
              help=f"Also write the results to an evaluation index (default name {results_index.DEFAULT_INDEX}).")
@click.option("--run-id", default=None, help="Run id to record (default: UTC time + random suffix).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every per-query and mean result as JSON to this file.")
@click.option("--worst", type=int, default=0, help="Also list each profile's N worst queries by the first metric.")
@_models_options
@connection_options
def eval_cmd(conn, index_name, judgments_path, queries_file, limit, profiles, metrics, to_index, run_id, json_out,
             worst, models_dir, heads_dir, allow_other_space, no_models, ocr, aliases, synonyms):
    """Score profiles side by side on a judgment set: nDCG, recall, MRR, per query and averaged."""
    js = _load(judgments_path, queries_file, limit)
    try:
        specs = parse_metrics(metrics) if metrics else DEFAULT_METRICS
        names = profiles or tuple(p for p in STANDARD_PROFILES if p in shipped_profiles())
        loaded = [load_profile(p) for p in names]
    except (ValueError, ProfileError) as exc:
        raise click.UsageError(str(exc)) from None
    factory = _factory(conn, index_name, models_dir, heads_dir, allow_other_space, no_models, ocr, aliases, synonyms)
    try:
        searches = {p.name: factory(p) for p in loaded}
        run = run_profiles(js, searches, specs, run_id=run_id or new_run_id(), progress=_progress)
        written = results_index.write_run(conn.client(), run, to_index, product_index=index_name) if to_index else 0
    except (EvalError, SearchError, IndexMismatch, BulkWriteError) as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    click.echo(format_table(run))
    if worst:
        click.echo("")
        click.echo(format_worst(run, specs[0].name, worst))
    if json_out:
        json_out.write_text(run.to_json(), encoding="utf-8")
        click.echo(f"results: {json_out}")
    if to_index:
        click.echo(f"wrote {written} result documents to {to_index} (run {run.run_id})")


@click.command()
@_judgments_options
@click.option("--profile", "base_profile", default="hybrid_minmax", show_default=True,
              help="Profile to start from: a shipped name or a JSON file.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the best profile (JSON).")
@click.option("--name", "tuned_name", default=None, help="Name of the tuned profile (default: <profile>_tuned).")
@click.option("--trials", default=30, show_default=True, help="Profiles to try, the base profile included.")
@click.option("--time-budget", type=float, default=None, help="Stop sampling after this many seconds.")
@click.option("--holdout", default=0.3, show_default=True, help="Share of the queries held out for the report.")
@click.option("--seed", default=0, show_default=True)
@click.option("--metric", default="ndcg@10", show_default=True, help="What to maximize on the train split.")
@click.option("--space", "space_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Parameter space JSON (default: fusion weights, k, rank constant and boosts of the profile).")
@click.option("--show-space", is_flag=True, help="Print the parameter space and exit.")
@_models_options
@connection_options
def tune(conn, index_name, judgments_path, queries_file, limit, base_profile, out_file, tuned_name, trials,
         time_budget, holdout, seed, metric, space_file, show_space, models_dir, heads_dir, allow_other_space,
         no_models, ocr, aliases, synonyms):
    """Random-search a profile's weights, k and boosts on a train split; report held-out queries.

    The weights of the fused vector are not tuned: they are the index's, recorded with its space.
    """
    try:
        base = load_profile(base_profile).to_dict()
        space = load_space(space_file, base) if space_file else default_space(base)
    except (ProfileError, SpaceError) as exc:
        raise click.UsageError(str(exc)) from None
    if show_space:
        import json

        click.echo(json.dumps(space.to_dict(), indent=2))
        return
    js = _load(judgments_path, queries_file, limit)
    factory = _factory(conn, index_name, models_dir, heads_dir, allow_other_space, no_models, ocr, aliases, synonyms)

    def report(trial):
        score = "rejected" if trial.train_score is None else f"{trial.train_score:.4f}"
        click.echo(f"  trial {trial.index:>3}: {metric} {score}", err=True)

    try:
        res = tune_profile(base, js, factory, space=space, metric=metric, trials=trials, holdout=holdout, seed=seed,
                           time_budget_s=time_budget, tuned_name=tuned_name, progress=report)
    except (ValueError, EvalError, SearchError) as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    finally:
        factory.delete_pipelines(tuned_name or f"{base['name']}_tuned")
    write_profile(res.best, out_file)
    click.echo(format_report(res))
    click.echo(f"best profile: {out_file}")


@click.group()
def judgments() -> None:
    """Judgment sets."""


@judgments.command("from-events")
@click.option("--events-index", default=None, help=f"Read the events from this index (e.g. {ev.DEFAULT_INDEX}).")
@click.option("--events-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read the events from a JSON-lines file instead.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for qrels.txt + queries.jsonl.")
@click.option("--srw", "srw_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write Search Relevance Workbench import JSON.")
@click.option("--name", default="clicks", show_default=True, help="Judgment set name.")
@click.option("--max-rank", default=20, show_default=True, help="Ignore impressions and clicks below this position.")
@click.option("--min-impressions", default=3, show_default=True,
              help="Judge a query-product pair only after this many impressions.")
@click.option("--application", default=None, help="Only events of this application.")
@click.option("--since", default=None, help="Only events at or after this time (ISO 8601 or date math).")
@click.option("--until", default=None, help="Only events before this time.")
@connection_options
def from_events(conn, events_index, events_file, out_dir, srw_file, name, max_rank, min_impressions, application,
                since, until):
    """Turn searches and clicks into graded judgments (0-3) with the COEC click model."""
    if bool(events_index) == bool(events_file):
        raise click.UsageError("give exactly one of --events-index and --events-file")
    if events_file and (since or until):
        raise click.UsageError("--since/--until filter an events index; filter the file beforehand")
    try:
        config = ClickModelConfig(max_rank=max_rank, min_impressions=min_impressions)
        if events_file:
            events = [e for e in ev.read_events(events_file) if not application or e.application == application]
        else:
            events = list(ev.scan_events(conn.client(), events_index, application=application, since=since,
                                         until=until))
        js, report = judgments_from_events(events, config, name=name)
    except (ev.EventError, ValueError) as exc:
        raise click.ClickException(conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    qrels, queries = write_trec(js, out_dir)
    click.echo(report.summary())
    click.echo(f"wrote {len(js)} queries: {qrels} and {queries}")
    if srw_file:
        write_srw(js, srw_file, description=f"COEC judgments from {events_index or events_file}")
        click.echo(f"wrote {srw_file}")
