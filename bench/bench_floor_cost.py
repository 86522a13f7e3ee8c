"""What the no-words floors cost a text query: the shipped hybrid_minmax against the same profile
without floors, interleaved query by query on one index (ratios, not absolute figures, carry over).

With floors every text search also counts its real matches (the lexical match or the radial
k-NN above the space's floors), in the same ``_msearch`` as the ranked search: one more search
per query, run by the node beside the ranked one (before d223ef1 it was a ``_count`` first, one
more round trip).

Usage: python bench/bench_floor_cost.py --url URL --index scale-src --heads W/heads/ikea_trainsplit [--n 150]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_query as bq  # noqa: E402

from opensearchpy import OpenSearch  # noqa: E402

from query_builder import Profile, QueryVectors, Searcher, SearchRequest, load_profile  # noqa: E402
from query_builder.index_space import space_for_index  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--heads", default=None)
    ap.add_argument("--n", type=int, default=150, help="text queries (the first 20 warm up)")
    args = ap.parse_args(argv)
    client = OpenSearch(args.url)
    space = space_for_index(client, args.index, heads=args.heads)
    unfloored = load_profile("hybrid_minmax").to_dict()
    for r in unfloored["retrievers"]:
        r.pop("no_words_min_score", None)
    variants = {"shipped (space floors)": Searcher(client, "hybrid_minmax", space, index=args.index),
                "no floors": Searcher(client, Profile.from_dict({**unfloored, "name": "no_floors"}), space,
                                      index=args.index)}
    texts = [q["text"] for q in bq.make_queries(args.n)["text"]]
    reqs = [SearchRequest(text=t, vectors=QueryVectors(text=tuple(space.embed_query(text=t).text))) for t in texts]
    for s in variants.values():
        for r in reqs[:20]:
            s.search(r)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in reqs[20:]:
        for k, s in variants.items():
            t = time.perf_counter()
            s.search(r)
            times[k].append((time.perf_counter() - t) * 1000)
    for k, v in times.items():
        v.sort()
        print(f"{k:24} n={len(v)} p50 {statistics.median(v):6.1f} ms  p95 {v[int(0.95 * len(v)) - 1]:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
