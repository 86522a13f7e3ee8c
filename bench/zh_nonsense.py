"""How many of the queries nothing should match (``nonsense.jsonl`` of bench/make_zh_queries.py) get hits.

Random letter strings must not turn into pinyin, initials or fuzzy matches that fill a page, and
out-of-catalog words (笔记本电脑 in a cosmetics catalog) must not be "corrected" into something
the catalog sells.  Prints, per profile, the queries that returned any hit and the mean number of
hits on the first page.

Usage: ``python bench/zh_nonsense.py --queries W/zh_queries/nonsense.jsonl --index product1m
[--profile bm25 ...] [--synonyms FILE] [--url URL]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from cmsearch.space_options import open_space  # noqa: E402
from engine.client import ConnectionSettings  # noqa: E402
from query_builder import Searcher, SearchRequest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--profile", dest="profiles", action="append", default=[])
    ap.add_argument("--url", default=None)
    ap.add_argument("--no-models", action="store_true")
    args = ap.parse_args(argv)
    queries = [json.loads(line)["text"] for line in args.queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    client = ConnectionSettings.resolve(args.url).client()
    space = None if args.no_models else open_space(client, args.index, None, None)[0]
    for name in args.profiles or ["bm25", "hybrid_minmax"]:
        searcher = Searcher(client, name, space, index=args.index)
        with_hits, total_hits, lexical_hits, examples = 0, 0, 0, []
        for q in queries:
            r = searcher.search(SearchRequest(text=q, size=10))
            lexical = Searcher(client, "bm25", index=args.index).search(SearchRequest(text=q, size=10))
            with_hits += bool(r.hits)
            total_hits += len(r.hits)
            lexical_hits += bool(lexical.hits)
            if lexical.hits and len(examples) < 5:
                examples.append(f"{q} -> {lexical.hits[0].title[:30]}"
                                + (f" (did you mean {dym})" if (dym := getattr(lexical, "did_you_mean", None)) else ""))
        print(f"{name}: {with_hits}/{len(queries)} queries got hits, {total_hits / len(queries):.1f} hits each; "
              f"words alone (bm25) matched {lexical_hits}/{len(queries)}")
        for e in examples:
            print(f"    {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
