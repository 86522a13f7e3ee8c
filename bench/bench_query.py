"""Query latency benchmark: p50/p95/p99 of text, photo and text+photo searches on a ~10k index.

Each search with the ``hybrid_minmax`` profile is split, from outside the query builder, into

- **encode**: ``query_builder.query_vectors.encode`` (text e5 vector; photo decode + MobileNetV2 feature +
  projection head + category classifier);
- **build**: ``Searcher.prepare`` on the encoded request (vocabulary lookup, understanding,
  tokenization, ``build_search``), timed by a ``Searcher`` subclass that only wraps it;
- **engine**: every client round trip the searcher makes (``search`` / ``msearch`` / ``count`` /
  pipeline ``PUT``), timed by a proxy around the OpenSearch client; this includes the client's
  JSON encoding of the body (vectors as text) and decoding of the answer.  The engine's own
  ``took`` is reported next to it, so the HTTP + JSON share is visible;
- **fuse**: the rest of ``Searcher.search`` (routing, client-side fusion when the cluster cannot
  fuse, hit and facet assembly): its wall time minus build and engine.

The same queries also run with the ``bm25`` profile (no encoders; photo-only queries have no text
for it and are not run).  Every mode is warmed up first (pipeline creation, vocabulary read,
onnxruntime first runs, JIT of the engine) and then measured sequentially, one client.

The index is built by the caller (so ingest is timed by ``cmsearch ingest`` itself)::

    python bench/bench_query.py --make-catalog /tmp/bq       # writes /tmp/bq/mixed_10k.jsonl
    cmsearch ingest /tmp/bq/mixed_10k.jsonl --index bench-query-10k --create
    python bench/bench_query.py --index bench-query-10k [--queries 500] [--warmup 30]

The catalog is ``bench_ingest.build_catalogs``' ``mixed-10k``: IKEA (2,191) + every Grocery
shelf photo (5,421) as a product + IKEA copies under new ids up to 10,000.  Queries come from the
shared data: English "type, colour" and description texts and Chinese queries (IKEA), Grocery
class names; photos are IKEA room photos and Grocery validation-split shelf photos.

Targets (issue 7, 2 cores): text p50 <= 30 ms and p99 <= 80 ms end to end; everything but the
engine <= 40 % of the total.  Prints one table; asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA") or REPO.parent / "shared" / "data")
DEFAULT_INDEX = "bench-query-10k"
PHASES = ("encode", "build", "engine", "fuse")
TARGET_P50_MS, TARGET_P99_MS, TARGET_NON_ENGINE = 30.0, 80.0, 0.40


# --------------------------------------------------------------------------- the queries
def make_queries(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """n text, n photo and n text+photo queries: {"text": str | None, "image": path | None}."""
    import make_catalogs as mc

    rng = random.Random(seed)
    ikea = mc.ikea_records(DATA)
    texts: list[str] = []
    tc = sorted({r["attributes"]["type"] + (f", {r['attributes']['color']}" if r["attributes"]["color"] else "")
                 for r in ikea})
    desc = sorted({r["description"] for r in ikea if r["description"]})
    classes = mc.grocery_classes(DATA)
    grocery_names = sorted({c["name"].replace("-", " ") for c in classes} |
                           {c["coarse"].replace("-", " ") for c in classes})
    zh = sorted({q for q, *_ in mc.ZH_IKEA} | {q for q, _ in mc.ZH_GROCERY})
    # a mix like a shop's: mostly short queries, some Chinese, some long (descriptions)
    mix = [(tc, 0.45), (zh, 0.20), (grocery_names, 0.15), (desc, 0.20)]
    for pool, share in mix:
        texts += [rng.choice(pool) for _ in range(round(n * share))]
    texts = (texts + [rng.choice(tc) for _ in range(n)])[:n]
    rng.shuffle(texts)

    rooms = [json.loads(line) for line in (DATA / "ikea" / "rooms.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    room_photos = [str((DATA / "ikea" / r["image"]).resolve()) for r in rooms
                   if (DATA / "ikea" / r["image"]).is_file()]
    names = {c["id"]: c["name"] for c in classes}
    shelf = [(s["image"], names[s["class_id"]]) for s in mc.grocery_shelf(DATA, "val")]
    n_rooms = min(len(room_photos), n // 2)
    photos = [(p, None) for p in rng.sample(room_photos, n_rooms)]
    photos += rng.sample(shelf, min(len(shelf), n - n_rooms))
    while len(photos) < n:
        photos.append(rng.choice(shelf))
    rng.shuffle(photos)
    photo_q = [{"text": None, "image": p} for p, _ in photos]
    # text + photo: a shelf photo with its product's name, a room photo with a short IKEA query
    both = [{"text": (name.replace("-", " ") if name else rng.choice(tc + zh)), "image": p} for p, name in photos]
    return {"text": [{"text": t, "image": None} for t in texts], "photo": photo_q, "text+photo": both}


# --------------------------------------------------------------------------- timing seams
class TimedClient:
    """The OpenSearch client with every round trip the searcher makes timed (wall clock)."""

    def __init__(self, client: Any):
        self._client = client
        self.seconds = 0.0
        self.took_ms = 0.0
        self.calls = 0
        self.transport = _TimedTransport(self)
        self.indices = client.indices

    def reset(self) -> None:
        self.seconds, self.took_ms, self.calls = 0.0, 0.0, 0

    def _timed(self, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            out = fn(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1
        if isinstance(out, dict):
            if "took" in out:
                self.took_ms += float(out["took"])
            elif "responses" in out:   # msearch: the sub-searches ran in parallel on the node
                self.took_ms += float(out.get("took") or max((r.get("took", 0) for r in out["responses"]), default=0))
        return out

    def search(self, *a, **kw):
        return self._timed(self._client.search, *a, **kw)

    def msearch(self, *a, **kw):
        return self._timed(self._client.msearch, *a, **kw)

    def count(self, *a, **kw):
        return self._timed(self._client.count, *a, **kw)

    def __getattr__(self, name):     # anything else (info, ...) untimed
        return getattr(self._client, name)


class _TimedTransport:
    def __init__(self, owner: TimedClient):
        self._owner = owner

    def perform_request(self, *a, **kw):
        return self._owner._timed(self._owner._client.transport.perform_request, *a, **kw)

    def __getattr__(self, name):
        return getattr(self._owner._client.transport, name)


def timed_searcher_class():
    from query_builder import Searcher

    class TimedSearcher(Searcher):
        """A Searcher whose ``prepare`` (understand + build on an already encoded request) is timed."""

        build_seconds = 0.0

        def prepare(self, request):
            t0 = time.perf_counter()
            try:
                return super().prepare(request)
            finally:
                self.build_seconds += time.perf_counter() - t0

    return TimedSearcher


# --------------------------------------------------------------------------- measuring
@dataclass
class Series:
    total: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    took: list[float] = field(default_factory=list)
    paths: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run_one(q: dict, searcher, tclient: TimedClient, encoders, size: int) -> tuple[float, dict[str, float], float, str]:
    from query_builder import QueryImage, SearchRequest, encode

    images = (QueryImage(Path(q["image"]).read_bytes(), name=q["image"]),) if q["image"] else ()
    req = SearchRequest(text=q["text"], images=images, size=size)
    t0 = time.perf_counter()
    if encoders is not None:
        req = encode(req, encoders)
    t_enc = time.perf_counter() - t0
    tclient.reset()
    searcher.build_seconds = 0.0
    t1 = time.perf_counter()
    result = searcher.search(req)
    t_search = time.perf_counter() - t1
    total = t_enc + t_search
    build, engine = searcher.build_seconds, tclient.seconds
    phases = {"encode": t_enc, "build": build, "engine": engine, "fuse": max(0.0, t_search - build - engine)}
    return total, phases, tclient.took_ms, result.fusion_path


def measure(queries: list[dict], searcher, tclient, encoders, size: int, warmup: int) -> Series:
    for q in queries[:warmup] + queries[-warmup:]:
        try:
            run_one(q, searcher, tclient, encoders, size)
        except Exception:  # noqa: BLE001 - a failing query is counted below, when measured
            pass
    s = Series()
    for q in queries:
        try:
            total, phases, took, path = run_one(q, searcher, tclient, encoders, size)
        except Exception as exc:  # noqa: BLE001
            s.errors.append(f"{q['text']!r} {q['image']}: {type(exc).__name__}: {exc}"[:300])
            continue
        s.total.append(total * 1000)
        for p in PHASES:
            s.phases[p].append(phases[p] * 1000)
        s.took.append(took)
        s.paths[path] = s.paths.get(path, 0) + 1
    return s


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))]


# --------------------------------------------------------------------------- reporting
def machine_line() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} | {cpu or platform.processor()} | {os.cpu_count()} cores | Python {platform.python_version()}"


def table(rows: list[tuple[str, str, Series]]) -> str:
    head = (f"{'request':<11} {'profile':<14} {'n':>4} {'path':<14} | {'total p50':>9} {'p95':>6} {'p99':>6} | "
            f"{'encode p50':>10} {'p99':>6} | {'build p50':>9} {'p99':>5} | {'engine p50':>10} {'p95':>6} {'p99':>6} "
            f"{'took p50':>8} | {'fuse p50':>8} {'p99':>5} | {'non-engine':>10}")
    lines = [head, "-" * len(head)]
    for kind, prof, s in rows:
        if not s.total:
            lines.append(f"{kind:<11} {prof:<14} {0:>4} {'n/a':<14} | no measurable queries"
                         + (f" ({len(s.errors)} errors, e.g. {s.errors[0]})" if s.errors else ""))
            continue
        ph = s.phases
        share = 1 - sum(ph["engine"]) / sum(s.total)
        path = ",".join(f"{k}" + (f"x{v}" if len(s.paths) > 1 else "") for k, v in sorted(s.paths.items()))
        lines.append(
            f"{kind:<11} {prof:<14} {len(s.total):>4} {path:<14} | {pct(s.total, 50):9.1f} {pct(s.total, 95):6.1f} "
            f"{pct(s.total, 99):6.1f} | {pct(ph['encode'], 50):10.1f} {pct(ph['encode'], 99):6.1f} | "
            f"{pct(ph['build'], 50):9.2f} {pct(ph['build'], 99):5.1f} | {pct(ph['engine'], 50):10.1f} "
            f"{pct(ph['engine'], 95):6.1f} {pct(ph['engine'], 99):6.1f} {pct(s.took, 50):8.0f} | "
            f"{pct(ph['fuse'], 50):8.2f} {pct(ph['fuse'], 99):5.1f} | {share:10.0%}"
            + (f"  ({len(s.errors)} errors)" if s.errors else ""))
    return "\n".join(lines)


def verdict(rows: list[tuple[str, str, Series]], profile: str) -> list[str]:
    out = []
    for kind, prof, s in rows:
        if prof != profile or not s.total:
            continue
        share = 1 - sum(s.phases["engine"]) / sum(s.total)
        checks = [f"non-engine {share:.0%} {'<=' if share <= TARGET_NON_ENGINE else '>'} {TARGET_NON_ENGINE:.0%}"]
        if kind == "text":
            p50, p99 = pct(s.total, 50), pct(s.total, 99)
            checks = [f"p50 {p50:.1f} ms {'<=' if p50 <= TARGET_P50_MS else '>'} {TARGET_P50_MS:.0f}",
                      f"p99 {p99:.1f} ms {'<=' if p99 <= TARGET_P99_MS else '>'} {TARGET_P99_MS:.0f}", *checks]
        ok = all("<=" in c for c in checks)
        out.append(f"  {kind:<11} {prof}: {'MEETS' if ok else 'MISSES'} target ({'; '.join(checks)})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-catalog", type=Path, default=None, metavar="DIR",
                    help="write the 10k catalog (mixed_10k.jsonl) into DIR and exit")
    ap.add_argument("--index", default=DEFAULT_INDEX)
    ap.add_argument("--profile", default="hybrid_minmax")
    ap.add_argument("--baseline", default="bm25", help="profile run on the same queries for comparison")
    ap.add_argument("--queries", type=int, default=500, help="queries per request kind")
    ap.add_argument("--warmup", type=int, default=30, help="queries run (twice, from both ends) before measuring")
    ap.add_argument("--kinds", default="text,photo,text+photo")
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", type=Path, default=None, help="heads directory (default <models>/heads); must be "
                    "the heads the index was ingested with")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads per encoder (default: one per core)")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement as JSON")
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    if not (DATA / "ikea" / "products.jsonl").is_file():
        print(f"skipped: shared data not found at {DATA} (set CMSEARCH_SHARED_DATA)")
        return 0
    if args.make_catalog:
        from bench_ingest import build_catalogs

        args.make_catalog.mkdir(parents=True, exist_ok=True)
        path = build_catalogs(args.make_catalog, ["10k"])["mixed-10k"]
        print(f"{path}  ({sum(1 for _ in path.open(encoding='utf-8'))} products)")
        return 0

    from engine.client import ConnectionSettings, safe_url
    from cmsearch.space_options import open_space
    from query_builder import load_profile

    conn = ConnectionSettings.resolve(args.url)
    client = conn.client()
    if not client.indices.exists(index=args.index):
        print(f"index {args.index!r} does not exist: build it first (see --help)", file=sys.stderr)
        return 2
    docs = client.count(index=args.index)["count"]
    version = client.info()["version"]["number"]
    encoders, _ = open_space(client, args.index, args.models, args.heads)   # the space the index records
    for p in encoders.problems:
        print(f"note: {p}", file=sys.stderr)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    queries = make_queries(args.queries, args.seed)
    TimedSearcher = timed_searcher_class()
    tclient = TimedClient(client)
    load_start = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    rows: list[tuple[str, str, Any]] = []
    for kind in kinds:
        qs = queries[kind]
        for prof_name, enc in ((args.profile, encoders), (args.baseline, None)):
            if not prof_name:
                continue
            prof = load_profile(prof_name)
            if enc is None and kind == "photo":
                rows.append((kind, prof.name, Series(errors=["no query text: lexical search has nothing to match"])))
                continue
            # with the space, as a real searcher: the floors are shipped behaviour (the request is
            # encoded before, and timed apart)
            searcher = TimedSearcher(tclient, prof, enc, index=args.index, vocabulary_max_age_s=float("inf"))
            t0 = time.perf_counter()
            s = measure(qs, searcher, tclient, enc, args.size, args.warmup)
            print(f"  {kind:<11} {prof.name:<14} {len(s.total)} queries in {time.perf_counter() - t0:.0f} s"
                  + (f", {len(s.errors)} errors (first: {s.errors[0]})" if s.errors else ""), file=sys.stderr)
            rows.append((kind, prof.name, s))
    load_end = os.getloadavg()
    print(f"\nQuery latency, ms (sequential, one client; {args.warmup * 2} warm-up queries per row, then "
          f"{args.queries} measured per row, 1 run)")
    print(f"machine: {machine_line()}; load avg {load_start[0]:.1f} at start, {load_end[0]:.1f} at end")
    print(f"date: {started:%Y-%m-%d %H:%M} UTC; OpenSearch {version} at {safe_url(conn.url)}, "
          f"index {args.index!r} ({docs} products); encoder threads: {args.threads or 'default'}")
    print(table(rows))
    print("total = encode + build + engine + fuse. engine = client round trips (incl. JSON en/decoding; "
          "'took' = the engine's own time, summed over requests); fuse = rest of Searcher.search.")
    print("non-engine = share of summed total time outside the engine round trips.")
    print(f"targets: text p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms end to end; "
          f"non-engine <= {TARGET_NON_ENGINE:.0%}")
    for line in verdict(rows, load_profile(args.profile).name):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(), "machine": machine_line(), "index": args.index, "docs": docs,
            "rows": [{"kind": k, "profile": p, "total_ms": s.total, "phases_ms": s.phases, "took_ms": s.took,
                      "paths": s.paths, "errors": s.errors} for k, p, s in rows]}, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
