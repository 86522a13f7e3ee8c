"""Shop the look on the IKEA room photos: room photo -> the products in it, nDCG@10, by regions.

The 205 rooms are split once (seeded permutation of their file names) into ``val`` (choose the
grids, overlap and merge) and ``test`` (report). Two modes:

- ``sweep`` (no engine): every (grids, overlap, merge) setting of the grid below on the val rooms
  (or ``--split test``), simulating the ``image`` profile's photo retriever exactly as the index
  scores it: cosine of the region's raw backbone feature to each product photo's feature, a
  product as its best photo, the top ``--k`` per region; then merged. The whole-photo query is
  the first row.
- ``engine``: the real thing through OpenSearch, ``Searcher.search_regions`` with the shipped
  profiles (``--profile``, repeatable) on an ingested IKEA index, against the whole-photo
  ``Searcher.search``; per-query nDCG@10 with a bootstrap 95 % interval, and the paired
  difference.

Usage::

    python bench/eval_regions.py sweep --models DIR [--split val] [--cache DIR]
    python bench/eval_regions.py engine --index ikea --models DIR --heads DIR [--profile image ...]
        [--grids 1,2,3 --overlap 0.25 --merge max] [--split test]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from evaluation.metrics import ndcg_at_k  # noqa: E402
from query_builder.regions import RegionSpec, cut_regions, merge_regions  # noqa: E402

DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA") or REPO.parent / "shared" / "data")
N_VAL = 85
GRIDS = ((1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), (2, 3), (2, 3, 4), (1, 3), (3,))
OVERLAPS = (0.0, 0.25, 0.5)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def rooms(data: Path, split: str) -> list[dict]:
    """The rooms of one split: a fixed permutation (seed 0) of the sorted list, the first N_VAL are val."""
    rows = sorted((json.loads(line) for line in (data / "ikea" / "rooms.jsonl").open()), key=lambda r: r["image"])
    perm = np.random.default_rng(0).permutation(len(rows))
    picked = perm[:N_VAL] if split == "val" else perm[N_VAL:]
    return [rows[i] for i in sorted(picked)]


def bootstrap(x, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    m = x[np.random.default_rng(seed).integers(0, len(x), (n, len(x)))].mean(axis=1)
    return float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def paired(a, b, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    m = d[np.random.default_rng(seed).integers(0, len(d), (n, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


# ------------------------------------------------------------------------------ sweep
def sweep(args) -> int:
    from models.space import Space
    from models.training.features import FeatureCache

    space = Space.load(args.models, None, strict=True, threads=2)
    fx = FeatureCache(space, args.cache, log=log)
    products = [json.loads(line) for line in (args.data / "ikea" / "products.jsonl").open()]
    with_img = [p for p in products if p.get("image")]
    batch = fx.images([str(args.data / "ikea" / p["image"]) for p in with_img])
    pid = np.array([with_img[i]["id"] for i in batch.ok])
    cat = batch.features / np.linalg.norm(batch.features, axis=1, keepdims=True)
    known = {p["id"] for p in products}
    rs = rooms(args.data, args.split)
    log(f"{len(rs)} {args.split} rooms; catalog {len(pid)} product photos; k {args.k} per region")
    # features of every box of every setting, per room (one batch per room)
    feats: dict[tuple, np.ndarray] = {}
    sizes: dict[int, tuple[int, int]] = {}
    t0 = time.perf_counter()
    for ri, room in enumerate(rs):
        img = space.decode(str(args.data / "ikea" / room["image"]))
        img = img.convert("RGB") if img.mode != "RGB" else img
        sizes[ri] = img.size
        boxes = {}
        for ov in OVERLAPS:
            for n in (1, 2, 3, 4):
                for b in cut_regions(img.width, img.height, (n,), ov):
                    boxes.setdefault(b, None)
        keys = list(boxes)
        f, _ = space.image_features(np.stack([space.preprocess(img.crop(b.as_tuple())) for b in keys]))
        for b, row in zip(keys, f):
            feats[(ri, b)] = row
        if (ri + 1) % 20 == 0:
            log(f"  {ri + 1}/{len(rs)} rooms, {len(feats)} regions, {time.perf_counter() - t0:.0f} s")

    def ranked(vec: np.ndarray) -> list[tuple[str, float]]:
        s = cat @ vec
        top = np.argsort(-s)[:args.k]
        return [(pid[i], float((1 + s[i]) / 2)) for i in top]   # OpenSearch's cosinesimil score

    cache: dict[tuple, list] = {}
    rows = []
    for grids, ov, merge in itertools.chain([((1,), 0.0, "max")],
                                            itertools.product(GRIDS[1:], OVERLAPS, ("max", "rrf"))):
        if grids == (1,) and rows:
            continue
        scores = []
        for ri, room in enumerate(rs):
            lists = []
            for n in grids:
                for b in cut_regions(*sizes[ri], (n,), ov):
                    key = (ri, b)
                    if key not in cache:
                        cache[key] = ranked(feats[key])
                    lists.append(cache[key])
            merged = [d for d, _, _ in merge_regions(lists, merge)]
            qrels = {p: 1 for p in room["products"] if p in known}
            scores.append(ndcg_at_k(merged, qrels, 10))
        lo, hi = bootstrap(scores)
        label = ("grid 1 alone (1-2 square windows)" if grids == (1,) else
                 f"grids {'+'.join(map(str, grids))} overlap {ov} {merge}")
        rows.append((label, float(np.mean(scores)), lo, hi, scores))
        log(f"{rows[-1][0]:38} nDCG@10 {rows[-1][1]:.4f} [{lo:.4f}, {hi:.4f}]")
    best = max(rows[1:], key=lambda r: r[1])
    d, dlo, dhi = paired(rows[0][4], best[4])
    log(f"\nbest on {args.split}: {best[0]} {best[1]:.4f}; vs whole photo {rows[0][1]:.4f}: {d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]")
    return 0


# ----------------------------------------------------------------------------- engine
def engine(args) -> int:
    from engine.client import ConnectionSettings
    from models.space import Space
    from query_builder import QueryImage, SearchRequest, Searcher
    from query_builder.regions import region_requests

    client = ConnectionSettings.resolve(args.url).client()
    space = Space.load(args.models, args.heads, strict=False, threads=2)
    known = {json.loads(line)["id"] for line in (args.data / "ikea" / "products.jsonl").open()}
    spec = RegionSpec(grids=tuple(int(g) for g in args.grids.split(",")), overlap=args.overlap, merge=args.merge)
    rs = rooms(args.data, args.split)
    log(f"{len(rs)} {args.split} rooms on index {args.index}; regions {spec}")
    searchers = {prof: Searcher(client, prof, space, index=args.index) for prof in args.profiles}
    whole = {p: [] for p in args.profiles}
    region = {p: [] for p in args.profiles}
    times = {p: [] for p in args.profiles}
    embed = []
    for i, room in enumerate(rs):
        req = SearchRequest(images=(QueryImage.from_path(args.data / "ikea" / room["image"]),), size=10)
        qrels = {p: 1 for p in room["products"] if p in known}
        t0 = time.perf_counter()
        regions = region_requests(req, space, spec)      # embedded once, searched with every profile
        embed.append(time.perf_counter() - t0)
        for prof, searcher in searchers.items():
            whole[prof].append(ndcg_at_k([h.id for h in searcher.search(req).hits], qrels, 10))
            t0 = time.perf_counter()
            res = searcher.search_regions(req, spec, regions=regions)
            times[prof].append(time.perf_counter() - t0)
            region[prof].append(ndcg_at_k([h.id for h in res.hits], qrels, 10))
        if (i + 1) % 20 == 0:
            log(f"  {i + 1}/{len(rs)} rooms: " + ", ".join(f"{p} {np.mean(region[p]):.4f}" for p in searchers))
    log(f"cut + embed per room: median {np.median(embed) * 1000:.0f} ms ({len(regions)} regions in the last)")
    out = {}
    for prof in args.profiles:
        w, r = whole[prof], region[prof]
        d, dlo, dhi = paired(w, r)
        (wlo, whi), (rlo, rhi) = bootstrap(w), bootstrap(r)
        log(f"{prof:16} whole photo {np.mean(w):.4f} [{wlo:.4f}, {whi:.4f}]   regions {np.mean(r):.4f} "
            f"[{rlo:.4f}, {rhi:.4f}]   diff {d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]   "
            f"searches of the regions median {np.median(times[prof]) * 1000:.0f} ms")
        out[prof] = {"whole": w, "regions": r, "seconds": times[prof]}
    if args.json:
        args.json.write_text(json.dumps(out))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("sweep", "engine"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--split", choices=("val", "test"), default=None)
    ap.add_argument("--k", type=int, default=100, help="results per region in the sweep (the image profile's k)")
    ap.add_argument("--index", default="ikea")
    ap.add_argument("--profile", dest="profiles", action="append", default=[])
    ap.add_argument("--grids", default=",".join(map(str, RegionSpec().grids)))
    ap.add_argument("--overlap", type=float, default=RegionSpec().overlap)
    ap.add_argument("--merge", default=RegionSpec().merge)
    ap.add_argument("--url", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.data / "ikea" / "rooms.jsonl").is_file():
        print(f"skipped: no IKEA rooms under {args.data}", file=sys.stderr)
        return 2
    if args.mode == "sweep":
        args.split = args.split or "val"
        return sweep(args)
    args.split = args.split or "test"
    args.profiles = args.profiles or ["image", "hybrid_minmax"]
    return engine(args)


if __name__ == "__main__":
    sys.exit(main())
