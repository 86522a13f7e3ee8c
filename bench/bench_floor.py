"""Calibrating the k-NN relevance floors: what nonsense gets, and what real queries keep.

For one index and its judged (val) sets, prints

- per text k-NN retriever, the score distribution of (a) the best hit of every nonsense query
  (random letter strings, and products no catalog here sells) and (b) every judged-relevant
  product a real query's k-NN list holds in its top 10: a floor above (a) and below most of (b)
  separates "nothing really matches" from a real match;
- per profile given, how many nonsense queries still get hits (and their mean total), and how
  many judged queries get none.

Usage::

    python bench/bench_floor.py --index product1m --judgments W/judgments_val --set ikea_type_color_val \\
        [--profile hybrid_minmax --profile floored.json] [--models DIR]
"""
from __future__ import annotations

import argparse
import random
import string
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from cmsearch.space_options import open_space  # noqa: E402
from engine.client import ConnectionSettings  # noqa: E402
from evaluation.judgments import load_judgments  # noqa: E402
from query_builder import Profile, SearchRequest, Searcher, encode, load_profile  # noqa: E402

# out of every catalog benchmarked here (furniture, groceries, cosmetics, clothes)
OUT_OF_CATALOG = ("笔记本电脑", "汽车轮胎", "挖掘机", "游戏显卡", "钓鱼竿", "excavator", "car tyre",
                  "graphics card", "fishing rod", "motorcycle helmet")


def nonsense_queries(n: int = 20, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    letters = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 12))) for _ in range(n)]
    return letters + list(OUT_OF_CATALOG)


def _knn_only(kind: str) -> Profile:
    return Profile.from_dict({"name": f"probe-{kind}", "retrievers": [{"kind": kind, "k": 10}], "boosts": {"enabled": False}})


def _pct(values: list[float]) -> str:
    if not values:
        return "(none)"
    a = np.asarray(values)
    return " ".join(f"p{p}={np.percentile(a, p):.4f}" for p in (1, 5, 10, 50, 90, 99)) + f" max={a.max():.4f} n={len(a)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--judgments", type=Path, action="append", default=[], help="judgments folder (repeatable)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="judged set (repeatable)")
    ap.add_argument("--profile", dest="profiles", action="append", default=[])
    ap.add_argument("--retriever", dest="retrievers", action="append", default=[],
                    help="k-NN retriever whose scores to show (default text_knn, text_image_knn)")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)
    client = ConnectionSettings.resolve(args.url).client()
    space = open_space(client, args.index, args.models, None)[0]

    def encoded(text: str) -> SearchRequest:
        return encode(SearchRequest(text=text), space)

    nonsense = [encoded(q) for q in nonsense_queries()]
    judged = []
    for name in args.sets:
        folder = next((d / name for d in args.judgments if (d / name).is_dir()), None)
        if folder is None:
            raise SystemExit(f"no judged set {name} under {args.judgments}")
        js = load_judgments(folder)
        judged += [(encoded(q.text), {d for d, g in q.grades.items() if g > 0}) for q in js.queries if q.text]
    for kind in args.retrievers or ["text_knn", "text_image_knn"]:
        s = Searcher(client, _knn_only(kind), index=args.index)
        try:
            top_nonsense = [r.hits[0].score for r in (s.search(q) for q in nonsense) if r.hits]
        except Exception as exc:  # noqa: BLE001 - an index without that field: say so, go on
            print(f"{kind}: {exc}")
            continue
        relevant, top_real = [], []
        for req, rel in judged:
            r = s.search(req)
            if r.hits:
                top_real.append(r.hits[0].score)
            relevant += [h.score for h in r.hits if h.id in rel]
        print(f"{kind:15} nonsense best hit      {_pct(top_nonsense)}")
        print(f"{kind:15} real queries best hit  {_pct(top_real)}")
        print(f"{kind:15} relevant in top 10     {_pct(relevant)}")
    for p in args.profiles:
        prof = load_profile(p)
        s = Searcher(client, prof, index=args.index)
        res = [s.search(q) for q in nonsense]
        with_hits = [r for r in res if r.hits]
        empty_real = sum(1 for req, _ in judged if not s.search(req).hits)
        print(f"profile {prof.name:28} nonsense with hits {len(with_hits)}/{len(res)} "
              f"(mean total {np.mean([r.total for r in res]):.1f}); judged queries with no hits {empty_real}/{len(judged)}")
        for q, r in zip(nonsense_queries(), res):
            if r.hits:
                print(f"    {q!r}: {len(r.hits)} hits, total {r.total}, first {r.hits[0].title[:40]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
