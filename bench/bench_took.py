"""The engine's own time (``took``) for built hybrid text queries, variants side by side.

Isolates what happens inside OpenSearch, without the encoders or the client, for the two
choices measured in BENCHMARKS.md "Query latency":

- **stored fields**: the body as built (``stored_fields: "_none_"``, display fields from doc
  values) against the same body loading stored fields (``_id``), at page size 10 and 1;
- **segments**: the same bodies on every ``--index`` given (e.g. an index and a force-merged
  clone of it, ``POST <clone>/_forcemerge?max_num_segments=1``).

Every variant runs on every query in turn (interleaved), ``--reps`` times after one warm-up
pass; the median ``took`` per variant and index is printed.  Asserts nothing::

    python bench/bench_took.py --index bench-query-10k-v2 --index bench-query-10k-fm --heads W/heads/ikea
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def variants(body: dict) -> dict[str, dict]:
    """The built body and the same body loading stored fields, each at page size 10 and 1."""
    stored = {k: v for k, v in body.items() if k != "stored_fields"}
    out = {}
    for name, b in (("as built (no stored fields)", body), ("loading stored fields", stored)):
        out[f"{name}, size 10"] = {**b, "size": 10}
        out[f"{name}, size 1"] = {**b, "size": 1}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", action="append", required=True, help="index to run on (repeatable)")
    ap.add_argument("--profile", default="hybrid_minmax")
    ap.add_argument("--queries", type=int, default=40, help="text queries (from bench_query's query set)")
    ap.add_argument("--reps", type=int, default=2, help="measured passes over the queries")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", type=Path, default=None, help="the heads the indices were ingested with")
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    import bench_query
    from engine.client import ConnectionSettings
    from cmsearch.space_options import open_space
    from query_builder import Searcher, SearchRequest, encode, load_profile

    client = ConnectionSettings.resolve(args.url).client()
    encoders, _ = open_space(client, args.index[0], args.models, args.heads)
    texts = [q["text"] for q in bench_query.make_queries(args.queries)["text"]]
    requests = [encode(SearchRequest(text=t, size=10), encoders) for t in texts]
    profile = load_profile(args.profile)
    took: dict[tuple[str, str], list[int]] = {}
    for index in args.index:
        searcher = Searcher(client, profile, None, index=index)
        searcher.search(requests[0])        # creates the search pipeline
        for rep in range(args.reps + 1):    # pass 0 warms up
            for req in requests:
                built = searcher.prepare(req)
                for name, body in variants(built.body()).items():
                    t = client.search(index=index, body=body, params=built.params())["took"]
                    if rep:
                        took.setdefault((index, name), []).append(t)
    width = max(len(i) for i in args.index)
    print(f"engine took, ms (median of {args.queries} queries x {args.reps} passes), profile {profile.name}")
    for (index, name), values in took.items():
        segments = len(client.cat.segments(index=index, format="json"))
        print(f"  {index:<{width}}  {segments:>2} segments  {name:<36} {statistics.median(values):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
