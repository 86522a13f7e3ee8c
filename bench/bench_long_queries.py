"""Pasted titles as queries: does the product come first, and do similar products follow?

Takes the titles of a catalog's own products as queries (the Product1M-zh listings by default:
long Chinese titles), split by id into ``val`` (choose settings here) and ``test`` (report), and
prints per profile: how many results each query gets (mean total, share with exactly one and
with fewer than ten), how often the product itself is first (P@1), and nDCG@10 with the product
itself graded 2 and listings of the same Product1M instance graded 1 (its similar products).
Only queries of at least ``--min-words`` words count (the profiles' long-query rule).

Usage::

    python bench/bench_long_queries.py --index product1m --catalog W/judgments/product1m.jsonl \\
        --split val --profile hybrid_minmax --profile long.json [--limit 1000] [--models DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from analysis import Tokenizer, normalize_text  # noqa: E402
from cmsearch.space_options import open_space  # noqa: E402
from engine.client import ConnectionSettings  # noqa: E402
from query_builder import SearchRequest, Searcher, encode, load_profile  # noqa: E402

DEFAULT_INSTANCES = REPO.parent / "shared" / "data" / "product1m-zh" / "dev.jsonl"


def split_of(pid: str) -> str:
    return "val" if int(hashlib.sha1(pid.encode()).hexdigest(), 16) % 2 == 0 else "test"


def ndcg10(ranked: list[str], grades: dict[str, int]) -> float:
    dcg = sum((2 ** grades.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(grades.values(), reverse=True)[:10]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--catalog", type=Path, required=True, help="the catalog JSONL the index was loaded from")
    ap.add_argument("--instances", type=Path, default=DEFAULT_INSTANCES, help="Product1M dev.jsonl (instances)")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--profile", dest="profiles", action="append", default=[])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--min-words", type=int, default=9)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    products = [json.loads(line) for line in args.catalog.read_text(encoding="utf-8").splitlines() if line.strip()]
    instances: dict[str, set[str]] = {}
    if args.instances.is_file():
        for line in args.instances.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            instances[str(r["id"])] = set(r.get("instances") or ())
    tk = Tokenizer()
    queries = [p for p in products if split_of(str(p["id"])) == args.split
               and len(tk.tokens(normalize_text(p["title"]))) >= args.min_words][: args.limit]
    client = ConnectionSettings.resolve(args.url).client()
    space = open_space(client, args.index, args.models, None)[0]
    encoded = [encode(SearchRequest(text=p["title"], size=10), space) for p in queries]
    print(f"{len(queries)} {args.split} titles of >= {args.min_words} words as queries on {args.index}")
    print(f"{'profile':34} {'mean total':>10} {'=1 result':>9} {'<10':>6} {'P@1':>6} {'nDCG@10':>8}")
    for name in args.profiles:
        prof = load_profile(name)
        s = Searcher(client, prof, index=args.index)
        totals, ones, under10, p1, nd = [], 0, 0, 0, []
        for p, req in zip(queries, encoded):
            pid = str(p["id"])
            mine = instances.get(pid, set())
            grades = {str(q["id"]): 1 for q in products if mine and instances.get(str(q["id"]), set()) & mine}
            grades[pid] = 2
            r = s.search(req)
            ids = [h.id for h in r.hits]
            totals.append(r.total)
            ones += r.total == 1
            under10 += r.total < 10
            p1 += bool(ids) and ids[0] == pid
            nd.append(ndcg10(ids, grades))
        n = len(queries) or 1
        print(f"{prof.name:34} {sum(totals) / n:10.1f} {ones / n:9.3f} {under10 / n:6.3f} {p1 / n:6.3f} "
              f"{sum(nd) / n:8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
