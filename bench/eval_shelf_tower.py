"""Grocery shelf photo -> product with heads as `cmsearch train` wrote them (issue 12, item 1).

``eval_finetune.py`` measures fine-tuning with its own protocol; this measures what the product
ships: heads folders written by ``cmsearch train`` (with or without ``--tune-blocks``), loaded as
ingest and search load them (``Space``, so a tuned tower in the heads folder is the tower), and
every catalog photo and shelf photo encoded through that space. Scored as the photo retrievers
score: cosine of the raw backbone feature (``image`` profile) or of the shared-space vector to
each catalog photo, a product as its best photo; top-1 over the val and test shelf photos, and the
paired difference of each heads folder against the first one.

Usage: python bench/eval_shelf_tower.py --work W --catalog W/grocery_with_shelf_cap64.jsonl \
           --heads base=DIR1 --heads tuned=DIR2 [--models DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from eval_regions import bootstrap, paired  # noqa: E402
from eval_shelf_regions import per_product  # noqa: E402
from models.space import Space  # noqa: E402
from models.training.catalog import read_catalog  # noqa: E402
from models.training.metrics import normalize  # noqa: E402


def encode(space, paths: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw unit features and shared-space vectors of photos (every one must decode)."""
    feats, _, ok, errors = space.encode_images(paths)
    if errors:
        raise SystemExit(f"{len(errors)} photos did not decode, e.g. {errors[0]}")
    return normalize(feats), space.project_image(feats)


def top1(query: np.ndarray, gallery: np.ndarray, gallery_product: np.ndarray, n_products: int) -> np.ndarray:
    """Each query's best product, a product scored as its best photo."""
    return np.argmax(per_product(query @ gallery.T, gallery_product, n_products), axis=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="holds queries/grocery_shelf_{val,test}.jsonl")
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--heads", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args(argv)
    products, _ = read_catalog(args.catalog)
    pid = [p.id for p in products]
    paths = [i for p in products for i in p.images]
    gprod = np.array([k for k, p in enumerate(products) for _ in p.images])
    shelf = {s: [json.loads(line) for line in (args.work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    truth = {s: np.array([pid.index(q["relevant"][0]) for q in shelf[s]]) for s in shelf}
    hits: dict = {}
    for spec in args.heads:
        name, d = spec.split("=", 1)
        space = Space.load(args.models, Path(d), threads=2)
        g_raw, g_shared = encode(space, paths)
        print(f"{name}: {space.identity.image_model} ({d})", flush=True)
        for part in ("val", "test"):
            q_raw, q_shared = encode(space, [q["image"] for q in shelf[part]])
            hits[(name, "raw", part)] = (top1(q_raw, g_raw, gprod, len(pid)) == truth[part]).astype(float)
            hits[(name, "shared", part)] = (top1(q_shared, g_shared, gprod, len(pid)) == truth[part]).astype(float)
    base = args.heads[0].split("=", 1)[0]
    print(f"\nshelf photo -> product top-1 [95 %], difference vs {base} (paired)")
    for (name, kind, part), h in hits.items():
        lo, hi = bootstrap(h)
        row = f"  {name:<10} {kind:<7} {part:<5} {h.mean():.4f} [{lo:.4f}, {hi:.4f}]"
        if name != base:
            d = paired(hits[(base, kind, part)], h)
            row += f"   {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
