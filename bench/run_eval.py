"""Run the standard profiles over every benchmark judgment set and print one table per set.

Needs the judgment sets of ``bench/make_judgments.py`` (its ``judgments.json`` says which catalog
each set searches) and the catalogs ingested into indices, by default named after the catalog
(``ikea``, ``grocery``, ``product1m``; override with ``--index ikea=bench-ikea``).  A set whose
index is missing is reported and skipped, so a partly ingested bench still gives its tables.

Usage::

    python bench/run_eval.py [--judgments DIR] [--set ikea_type_color ...] [--profile bm25 ...]
                             [--index catalog=index ...] [--limit N] [--to-index [cmsearch-eval]]
                             [--json OUT] [--models DIR] [--no-models] [--url URL] [--synonyms FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from analysis.synonyms import SynonymTable  # noqa: E402
from engine.client import ConnectionSettings  # noqa: E402
from evaluation import results_index  # noqa: E402
from evaluation.judgments import load_judgments  # noqa: E402
from evaluation.metrics import DEFAULT_METRICS, parse_metrics  # noqa: E402
from evaluation.runner import format_table, new_run_id, run_profiles  # noqa: E402
from evaluation.search_adapter import SearchFactory  # noqa: E402
from make_judgments import DEFAULT_OUT  # noqa: E402
from cmsearch.space_options import open_space  # noqa: E402
from query_builder import load_profile, shipped_profiles  # noqa: E402

STANDARD = ("bm25", "dense_text", "image", "hybrid_minmax", "hybrid_rrf", "hybrid_minmax_noboost")


def parse_index_map(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        cat, sep, index = p.partition("=")
        if not sep or not cat or not index:
            raise SystemExit(f"--index takes catalog=index, got {p!r}")
        out[cat] = index
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judgments", type=Path, default=DEFAULT_OUT, help=f"judgment sets folder (default {DEFAULT_OUT})")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="only this set (repeatable)")
    ap.add_argument("--profile", dest="profiles", action="append", default=[], help="profile (repeatable)")
    ap.add_argument("--metric", dest="metrics", action="append", default=[], help="metric (repeatable)")
    ap.add_argument("--index", dest="index_map", action="append", default=[], help="catalog=index (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries of each set")
    ap.add_argument("--to-index", nargs="?", const=results_index.DEFAULT_INDEX, default=None,
                    help="also write the results to an evaluation index")
    ap.add_argument("--json", type=Path, default=None, help="write all runs as JSON")
    ap.add_argument("--models", type=Path, default=None, help="model directory")
    ap.add_argument("--no-models", action="store_true", help="no encoders: lexical retrieval only")
    ap.add_argument("--url", default=None, help="cluster URL (default: the local node)")
    ap.add_argument("--synonyms", type=Path, default=None, help="synonym file (Solr format) for every profile")
    args = ap.parse_args(argv)

    manifest_path = args.judgments / "judgments.json"
    if not manifest_path.is_file():
        print(f"no {manifest_path}: run bench/make_judgments.py first", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    wanted = args.sets or list(manifest)
    unknown = [s for s in wanted if s not in manifest]
    if unknown:
        print(f"unknown set(s) {unknown}; known: {list(manifest)}", file=sys.stderr)
        return 2
    index_of = {m["catalog"]: m["catalog"] for m in manifest.values()} | parse_index_map(args.index_map)
    profiles = [load_profile(p) for p in (args.profiles or [p for p in STANDARD if p in shipped_profiles()])]
    metrics = parse_metrics(args.metrics) if args.metrics else DEFAULT_METRICS
    synonyms = SynonymTable.load(args.synonyms) if args.synonyms else None
    conn = ConnectionSettings.resolve(args.url)
    client = conn.client()
    factories: dict[str, SearchFactory] = {}
    runs = []
    run_id = new_run_id()
    for name in wanted:
        index = index_of[manifest[name]["catalog"]]
        if not client.indices.exists(index=index):
            print(f"{name}: index {index!r} does not exist (ingest the {manifest[name]['catalog']} catalog); skipped\n")
            continue
        js = load_judgments(args.judgments / name)
        if args.limit:
            js = js.head(args.limit)
        if index not in factories:   # each index with the space (heads, weights) it records
            space = None if args.no_models else open_space(client, index, args.models, None)[0]
            for p in getattr(space, "problems", ()):
                print(f"note: {p}", file=sys.stderr)
            factories[index] = SearchFactory(client, index, space, synonyms=synonyms)
        factory = factories[index]
        t0 = time.perf_counter()
        run = run_profiles(js, {p.name: factory(p) for p in profiles}, metrics, run_id=f"{run_id}-{name}")
        print(format_table(run))
        print(f"({len(js)} queries on {index}, {time.perf_counter() - t0:.0f} s)\n")
        runs.append(run)
        if args.to_index:
            results_index.write_run(client, run, args.to_index, product_index=index)
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in runs], ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
