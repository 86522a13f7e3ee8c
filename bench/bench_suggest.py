"""Suggestion latency on a 10,000-product index: p50 / p95 / p99, end to end and the engine's ``took``.

``--make-index`` first writes the index: Product1M-zh, IKEA (bilingual titles) and Grocery
products through the ingest's own :class:`Enricher` (text, facet and suggest fields; no vectors,
which suggestions never read), topped up to ``--products`` with copies under new ids and a
numbered title, then merged to one segment as ingest does.  Prefixes are taken from the
titles, brands and categories: the first 1-4 characters in Chinese, the first 2-8 letters of
their pinyin, and 2-4 pinyin initials, in a fixed random order; each is searched through
``Searcher.suggest`` (sequential, one client).

Usage::

    python bench/bench_suggest.py --index bench-suggest-10k --make-index --catalogs W/catalogs \\
        --product1m W/judgments/product1m.jsonl [--n 1000]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import mappings  # noqa: E402
from analysis import Tokenizer  # noqa: E402
from engine.client import ConnectionSettings  # noqa: E402
from mappings import VectorDims  # noqa: E402
from plugin_ingest.enrich import Enricher  # noqa: E402
from plugin_ingest.schema import Product  # noqa: E402
from query_builder import Searcher  # noqa: E402
from analysis.suggestions import pinyin_forms  # noqa: E402


def _records(catalogs: Path, product1m: Path) -> list[dict]:
    out = []
    for path in (product1m, catalogs / "ikea.jsonl", catalogs / "grocery.jsonl"):
        if path.is_file():
            out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise SystemExit(f"no catalogs found under {catalogs} / {product1m} (run bench/make_catalogs.py and "
                         "bench/make_judgments.py)")
    return out


def _category(r: dict) -> tuple[str, ...]:
    c = r.get("category") or ()
    if isinstance(c, str):
        c = [x.strip() for x in c.split(">")]
    return tuple(x for x in c if x)


def make_index(client, index: str, records: list[dict], n: int) -> None:
    brands = sorted({str(r.get("brand") or "") for r in records} - {""})
    enricher = Enricher(Tokenizer(brands))
    client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.create(index=index, body=mappings.product_index_body(VectorDims(shared=384, image_feature=1280)))
    lines: list = []
    t0 = time.perf_counter()
    for i in range(n):
        r = records[i % len(records)]
        copy = i // len(records)
        title = str(r["title"]) + (f" {copy + 1}号" if copy else "")
        p = Product(id=f"{r['id']}-{copy}" if copy else str(r["id"]), title=title, brand=str(r.get("brand") or ""),
                    category=_category(r))
        lines += [{"index": {"_index": index, "_id": p.id}}, enricher.fields(p)]
        if len(lines) >= 1000:
            client.bulk(body=lines, request_timeout=120)
            lines = []
    if lines:
        client.bulk(body=lines, request_timeout=120)
    client.indices.refresh(index=index)
    client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=600)
    print(f"indexed {n} products into {index} in {time.perf_counter() - t0:.0f} s (one segment)")


def prefixes(records: list[dict], n: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        r = rng.choice(records)
        text = rng.choice([str(r["title"]), str(r.get("brand") or r["title"]), (_category(r) or (r["title"],))[-1]])
        kind = rng.choice(["chinese", "pinyin", "initials"])
        forms = pinyin_forms(text)
        if kind == "chinese" or not forms:
            out.append(("chinese", text.strip()[: rng.randint(1, 4)]))
        elif kind == "pinyin":
            out.append(("pinyin", forms[0][: rng.randint(2, 8)]))
        else:
            out.append(("initials", forms[-1][: rng.randint(2, 4)]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default="bench-suggest-10k")
    ap.add_argument("--make-index", action="store_true")
    ap.add_argument("--catalogs", type=Path, default=None)
    ap.add_argument("--product1m", type=Path, default=None)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=1000, help="measured suggestions (after 100 warm-up ones)")
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)
    client = ConnectionSettings.resolve(args.url).client()
    records = _records(args.catalogs or Path("."), args.product1m or Path("."))
    if args.make_index:
        make_index(client, args.index, records, args.products)
    count = client.count(index=args.index)["count"]
    searcher = Searcher(client, "bm25", index=args.index)
    took: list[float] = []
    orig = client.search

    def timed_search(*a, **kw):
        resp = orig(*a, **kw)
        took.append(float(resp.get("took", 0)))
        return resp
    client.search = timed_search
    qs = prefixes(records, args.n + 100)
    for _, q in qs[:100]:
        searcher.suggest(q)
    took.clear()
    per_kind: dict[str, list[float]] = {}
    empty = 0
    for kind, q in qs[100:]:
        t0 = time.perf_counter()
        found = searcher.suggest(q)
        per_kind.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
        empty += not found
    every = [v for vs in per_kind.values() for v in vs]
    print(f"{count} products in {args.index}; {len(every)} suggestions, {empty} without any")
    print(f"{'prefixes':10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for kind, vs in [*sorted(per_kind.items()), ("all", every)]:
        a = np.asarray(vs)
        print(f"{kind:10} {len(a):5d} {np.percentile(a, 50):8.2f} {np.percentile(a, 95):8.2f} {np.percentile(a, 99):8.2f}")
    t = np.asarray(took)
    print(f"engine took (ms): p50 {np.percentile(t, 50):.0f}  p99 {np.percentile(t, 99):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
