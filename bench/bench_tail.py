"""Where the tail of a text search comes from: variants of the same queries, interleaved, in one run.

``bench_query.py`` gives a row per kind of request; this splits the *tail* of the text row.
Every query is run once per variant in turn (query 1 variant A, query 1 variant B, ...), so a
burst of load from the other jobs on the machine hits every variant alike and their ratios can be
read even when the absolute figures cannot.  Variants:

- ``shipped``: ``Searcher`` as it is (best images fetched only for products with several images);
- ``probe-always``: the best-image request after every server-side search, as before
  (a second round trip per text query);
- ``enc-1-thread``: as shipped, with the query encoder on one onnxruntime thread instead of the
  default (one per core), which spins beside the engine's search threads on a 2-core machine;
- ``enc-no-spin``: as shipped, default threads, with onnxruntime's intra-op spin-waiting off even
  during a run (shipped sessions spin during a run and stop when it returns: models.runtime);
- ``no-floors``: the profile without its no-words floors, so without the real-match count that
  rides in the search's ``_msearch`` (what the honest totals cost).

For each variant: end-to-end p50/p95/p99, the encoder and engine round-trip p99, the engine's
``took`` p99, round trips per query, and which phase made the slowest 1 % slow.  Around the run
the node's GC collections and time, and its search thread pool (size, queue, rejections)::

    python bench/bench_tail.py --index bench-scale-10k [--queries 300] [--variants shipped,probe-always]

Asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

VARIANTS = ("shipped", "probe-always", "enc-1-thread", "enc-no-spin", "no-floors")


def gc_stats(client: Any) -> dict[str, float]:
    node = next(iter(client.nodes.stats(metric="jvm,thread_pool")["nodes"].values()))
    gcs = node["jvm"]["gc"]["collectors"]
    tp = node["thread_pool"]["search"]
    return {"young_n": gcs["young"]["collection_count"], "young_ms": gcs["young"]["collection_time_in_millis"],
            "old_n": gcs["old"]["collection_count"], "old_ms": gcs["old"]["collection_time_in_millis"],
            "search_threads": tp["threads"], "search_queue_max": tp.get("largest", 0),
            "search_rejected": tp["rejected"], "heap_used_mb": node["jvm"]["mem"]["heap_used_in_bytes"] / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--profile", default="hybrid_minmax")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", type=Path, default=None)
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    import bench_query as bq
    from engine.client import ConnectionSettings
    from query_builder import Profile, SearchRequest, encode, load_profile, space_for_index

    client = ConnectionSettings.resolve(args.url).client()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    spaces = {"default": space_for_index(client, args.index, args.models, args.heads)}
    if "enc-1-thread" in variants:
        spaces["one"] = space_for_index(client, args.index, args.models, args.heads, threads=1)
    if "enc-no-spin" in variants:
        import onnxruntime as ort

        spaces["nospin"] = space_for_index(client, args.index, args.models, args.heads)
        text = spaces["nospin"]._part("text")
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        text._session = ort.InferenceSession(text._session._model_path, opts, providers=["CPUExecutionProvider"])
    TimedSearcher = bq.timed_searcher_class()

    class ProbeAlways(TimedSearcher):
        """The searcher before the change: every product of the page asked for its best image."""

    import query_builder.search_flow as sf

    def _always(self, built, raw):
        body = built.best_image_body([sf.hit_id(h) for h in raw])
        if body is None:
            return
        resp = yield sf.calls.search(self.index, body)
        inner = {sf.hit_id(h): h.get("inner_hits") or {} for h in resp["hits"]["hits"]}
        for h in raw:
            h["inner_hits"] = {**(h.get("inner_hits") or {}), **inner.get(sf.hit_id(h), {})}

    ProbeAlways._attach_best_images = _always
    tclient = bq.TimedClient(client)
    profile = load_profile(args.profile)
    unfloored = profile.to_dict()
    for r in unfloored["retrievers"]:
        r.pop("no_words_min_score", None)
    profiles = {v: Profile.from_dict({**unfloored, "name": f"{profile.name}-no-floors"}) if v == "no-floors"
                else profile for v in variants}
    enc_of = {v: spaces[{"enc-1-thread": "one", "enc-no-spin": "nospin"}.get(v, "default")] for v in variants}
    # the searcher holds the space (its no-words floors are the shipped behaviour); it finds the
    # request already encoded, so the encoding is timed on its own, before the search
    searchers = {v: (ProbeAlways if v == "probe-always" else TimedSearcher)(
        tclient, profiles[v], enc_of[v], index=args.index, vocabulary_max_age_s=float("inf")) for v in variants}
    texts = [q["text"] for q in bq.make_queries(args.queries)["text"]]

    def one(v: str, text: str) -> dict[str, float]:
        s = searchers[v]
        t0 = time.perf_counter()
        req = encode(SearchRequest(text=text, size=10), enc_of[v])
        t_enc = time.perf_counter() - t0
        tclient.reset()
        s.build_seconds = 0.0
        res = s.search(req)
        total = time.perf_counter() - t0
        return {"total": total * 1000, "encode": t_enc * 1000, "engine": tclient.seconds * 1000,
                "took": tclient.took_ms, "calls": tclient.calls, "path": res.fusion_path}

    for text in texts[:args.warmup] + texts[-args.warmup:]:
        for v in variants:
            one(v, text)
    before = gc_stats(client)
    load0 = os.getloadavg()
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    t_run = time.perf_counter()
    for i, text in enumerate(texts):
        order = variants[i % len(variants):] + variants[:i % len(variants)]   # rotate who goes first
        for v in order:
            rows[v].append(one(v, text))
    wall = time.perf_counter() - t_run
    after = gc_stats(client)
    load1 = os.getloadavg()

    n = len(texts)
    print(f"\nText search tail, {args.index}, profile {profile.name}: {n} queries x {len(variants)} variants, "
          f"interleaved, one client; {bq.machine_line()}")
    print(f"load average 1/5/15 min: start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
          f"end {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}; run {wall:.0f} s")
    head = (f"{'variant':<14} | {'p50':>6} {'p95':>6} {'p99':>6} | {'enc p50':>7} {'p99':>6} | {'engine p50':>10} "
            f"{'p99':>6} | {'took p50':>8} {'p99':>5} | {'calls/q':>7} | slowest 1 %: mostly")
    print(head)
    print("-" * len(head))
    for v in variants:
        r = rows[v]
        tot = [x["total"] for x in r]
        cut = bq.pct(tot, 99)
        slow = [x for x in r if x["total"] >= cut]
        blame = {"encode": sum(x["encode"] for x in slow), "engine (took)": sum(x["took"] for x in slow),
                 "engine (outside took)": sum(x["engine"] - x["took"] for x in slow),
                 "client rest": sum(x["total"] - x["encode"] - x["engine"] for x in slow)}
        p50s = {"encode": bq.pct([x["encode"] for x in r], 50), "engine (took)": bq.pct([x["took"] for x in r], 50),
                "engine (outside took)": bq.pct([x["engine"] - x["took"] for x in r], 50),
                "client rest": bq.pct([x["total"] - x["encode"] - x["engine"] for x in r], 50)}
        excess = {k: blame[k] / len(slow) - p50s[k] for k in blame}
        worst = max(excess, key=excess.get)
        print(f"{v:<14} | {bq.pct(tot, 50):6.1f} {bq.pct(tot, 95):6.1f} {cut:6.1f} | "
              f"{bq.pct([x['encode'] for x in r], 50):7.1f} {bq.pct([x['encode'] for x in r], 99):6.1f} | "
              f"{bq.pct([x['engine'] for x in r], 50):10.1f} {bq.pct([x['engine'] for x in r], 99):6.1f} | "
              f"{bq.pct([x['took'] for x in r], 50):8.0f} {bq.pct([x['took'] for x in r], 99):5.0f} | "
              f"{statistics.mean(x['calls'] for x in r):7.2f} | {worst} (+{excess[worst]:.0f} ms over its p50)")
    # the same queries slow in every variant: the tail is in the queries, not in the moment
    first = variants[0]
    slowest = sorted(range(n), key=lambda i: -rows[first][i]["took"])[:max(3, n // 100)]
    for i in slowest:
        print(f"  slow in {first}: took " + " / ".join(f"{rows[v][i]['took']:.0f}" for v in variants)
              + f" ms ({', '.join(variants)}), path {rows[first][i]['path']}: {texts[i][:70]!r}")
    searches = sum(len(r) for r in rows.values())
    print(f"node during the run: {after['young_n'] - before['young_n']} young GCs, "
          f"{after['young_ms'] - before['young_ms']} ms in all ({(after['young_ms'] - before['young_ms']) / searches:.2f} "
          f"ms per search), {after['old_n'] - before['old_n']} old GCs; search pool {after['search_threads']} threads, "
          f"largest {after['search_queue_max']}, rejected {after['search_rejected'] - before['search_rejected']}; "
          f"heap used {after['heap_used_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
