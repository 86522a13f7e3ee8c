"""Shelf photo -> product by regions (issue 12, items 2 and 4): Grocery's shelf photos as scenes.

A Grocery shelf photo shows a pile or a shelf of one product; the catalog photo is one item on
white (setting a) or, in setting b, that plus the product's train shelf photos. Whole-photo
search compares the pile with the single item; a region search (``Searcher.search_regions``,
:mod:`query_builder.regions`) also compares windows of the photo, some of which hold one item.
This scores it without an engine, as the ``image`` profile's photo retriever does: cosine of
a region's raw backbone feature to each product photo's, a product as its best photo, then the
regions merged per product.

Settings (grids x overlap x merge) are chosen on the 296 val shelf photos; test (2,485) is
reported for the chosen one and the whole photo, with a paired bootstrap. ``max`` and ``rrf``
are the merges the product ships; ``mean`` (a product's mean score over the regions) is measured
beside them.

Usage: python bench/eval_shelf_regions.py --work W [--models DIR] [--settings ab] [--cache DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from eval_regions import bootstrap, paired  # noqa: E402
from models.space import Space  # noqa: E402
from models.training.catalog import read_catalog  # noqa: E402
from models.training.features import FeatureCache  # noqa: E402
from models.training.metrics import normalize  # noqa: E402
from query_builder.regions import cut_regions  # noqa: E402

GRIDS = ((1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), (2, 3), (2, 3, 4), (1, 3), (3, 4))
OVERLAPS = (0.0, 0.25, 0.5)
MERGES = ("max", "mean", "rrf")
ALL = (1, 2, 3, 4)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def region_features(space, paths: list[str], overlap: float, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw unit features of every window of grids 1-4 of each photo, and each window's (photo, grid)."""
    f = cache / f"shelf_regions_{hashlib.sha1(chr(10).join(paths).encode()).hexdigest()[:12]}_{overlap}.npz"
    if f.is_file():
        z = np.load(f)
        return z["feats"], z["owner"]
    feats, owner, batch, who = [], [], [], []
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = space.decode(p).convert("RGB")
        for n in ALL:
            for b in cut_regions(img.width, img.height, (n,), overlap):
                batch.append(space.preprocess(img.crop(b.as_tuple())))
                who.append((i, n))
        if len(batch) >= 64 or i == len(paths) - 1:
            feats.append(space.image_features(np.stack(batch))[0])
            owner.extend(who)
            batch, who = [], []
        if i % 200 == 199:
            log(f"  regions of {i + 1}/{len(paths)} photos (overlap {overlap}), {time.perf_counter() - t0:.0f}s")
    out = np.concatenate(feats), np.asarray(owner, np.int32)
    np.savez(f, feats=out[0], owner=out[1])
    return out


def per_product(sim: np.ndarray, gallery_product: np.ndarray, n_products: int) -> np.ndarray:
    s = np.full((sim.shape[0], n_products), -np.inf, np.float32)
    for p in range(n_products):
        cols = gallery_product == p
        if cols.any():
            s[:, p] = sim[:, cols].max(axis=1)
    return s


def predict(region_scores: np.ndarray, owner: np.ndarray, n_photos: int, grids, merge: str) -> np.ndarray:
    """Top product of each photo from its windows of ``grids`` merged by ``merge``."""
    keep = np.isin(owner[:, 1], grids)
    sc, who = region_scores[keep], owner[keep, 0]
    out = np.empty(n_photos, np.int64)
    for i in range(n_photos):
        rows = sc[who == i]
        if merge == "max":
            merged = rows.max(axis=0)
        elif merge == "mean":
            merged = rows.mean(axis=0)
        else:   # rrf, k = 60, over each window's ranking
            ranks = np.argsort(np.argsort(-rows, axis=1), axis=1) + 1
            merged = (1.0 / (60 + ranks)).sum(axis=0)
        out[i] = int(np.argmax(merged))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="bench work dir (catalogs, queries)")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default: W/shelf-cache)")
    ap.add_argument("--settings", default="ab")
    args = ap.parse_args(argv)
    cache = args.cache or args.work / "shelf-cache"
    cache.mkdir(parents=True, exist_ok=True)
    space = Space.load(args.models, None, threads=2)
    fx = FeatureCache(space, cache, log=log)
    shelf = {s: [json.loads(line) for line in (args.work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    catalogs = {"a": args.work / "grocery.jsonl", "b": args.work / "grocery_with_shelf_cap64.jsonl"}
    regions = {}
    for setting in args.settings:
        products, _ = read_catalog(catalogs[setting])
        pid = [p.id for p in products]
        paths = [i for p in products for i in p.images]
        gprod = np.array([k for k, p in enumerate(products) for _ in p.images])
        gallery = normalize(fx.images(paths).features)
        log(f"\nGrocery ({setting}): {len(pid)} products, {len(paths)} catalog photos")
        truth = {s: np.array([pid.index(q["relevant"][0]) for q in shelf[s]]) for s in shelf}
        hits, chosen = {}, None
        for part in ("val", "test"):
            for o in OVERLAPS if part == "val" else (chosen[1],):
                key = (part, o)
                if key not in regions:
                    regions[key] = region_features(space, [q["image"] for q in shelf[part]], o, cache)
                feats, owner = regions[key]
                sc = per_product(normalize(feats) @ gallery.T, gprod, len(pid))
                combos = (itertools.product(GRIDS, MERGES) if part == "val"
                          else [((1,), "max"), (chosen[0], chosen[2])])
                for grids, merge in combos:
                    if grids == (1,) and merge != "max":
                        continue
                    pred = predict(sc, owner, len(shelf[part]), grids, merge)
                    hits[(part, grids, o if grids != (1,) else None, merge)] = (pred == truth[part]).astype(float)
            if part == "val":
                val = {k: v.mean() for k, v in hits.items() if k[0] == "val"}
                log("val top-1 (whole photo = grids (1,)):")
                for k in sorted(val, key=lambda k: -val[k])[:12]:
                    log(f"  grids {k[1]} overlap {k[2]} merge {k[3]}: {val[k]:.4f}")
                best = max(val, key=lambda k: val[k])
                chosen = (best[1], best[2] if best[2] is not None else 0.25, best[3])
                whole = hits[("val", (1,), None, "max")]
                d = paired(whole, hits[best])
                log(f"chosen on val: grids {chosen[0]} overlap {chosen[1]} merge {chosen[2]}: "
                    f"{val[best]:.4f} vs whole photo {whole.mean():.4f}, "
                    f"difference {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]")
        whole = hits[("test", (1,), None, "max")]
        reg = hits[("test", chosen[0], chosen[1], chosen[2])]
        lo, hi = bootstrap(reg)
        wlo, whi = bootstrap(whole)
        d = paired(whole, reg)
        log(f"test ({len(whole)} shelf photos): whole photo {whole.mean():.4f} [{wlo:.4f}, {whi:.4f}], "
            f"regions {reg.mean():.4f} [{lo:.4f}, {hi:.4f}], difference {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
