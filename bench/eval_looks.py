"""Training variants for finding products by their looks (issue 12), on IKEA and Grocery.

Each variant is trained with several seeds and scored per query, so every figure comes with a
95 % interval from a paired bootstrap over the queries (the seeds averaged per query first):

- IKEA (split of ``make_catalogs``: 1,442 train / 200 val / 400 test products): text "type, color"
  -> photo R@10 (pool: the split's photos) and photo -> "type, color" text R@10 (pool: the split's
  products). Heads are trained on the train products with early stopping on val; with refit,
  they are then trained again on train + val for the chosen epoch count and scored on test.
- Grocery (81 products; val / test shelf photos): shelf photo -> product top-1, (a) with the iconic
  photo only, (b) with the train shelf photos as extra product images. Heads and classifier are
  trained on all 81 products, early stopping on the val shelf photos; the scorer (nearest neighbour
  in the raw or shared space, plus lambda x classifier probability) is chosen on val.

Knobs: image fit (centre crop / letterbox), augmented views per photo, text views (title; brand +
category; attributes; description), hard negatives (batches of whole categories), refit.

Usage: python bench/eval_looks.py --work W --cache C [--seeds 0,1,2] [--only ikea|grocery]
Prints the val and test tables and writes W/looks_<only>.json. Exits 2 when data or models are missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_catalogs as mc  # noqa: E402

from models.space import Space  # noqa: E402
from models.training.augment import AugmentConfig  # noqa: E402
from models.training.catalog import read_catalog  # noqa: E402
from models.training.classifier import ClassifierConfig, train_classifier  # noqa: E402
from models.training.features import FeatureCache  # noqa: E402
from models.training.metrics import first_relevant_rank, normalize  # noqa: E402
from models.training.pairs import PairData  # noqa: E402
from models.training.catalog import DEFAULT_TEXT_FIELDS  # noqa: E402
from models.training.train_catalog import _softmax_apply, add_views, apply_head, build_pairs  # noqa: E402
from models.training.trainer import TrainConfig, train_heads  # noqa: E402

# the three views `cmsearch train` used before the brand + category view became a default
THREE = (DEFAULT_TEXT_FIELDS, ("title",), ("description",))
CAT_VIEW, ATTR_VIEW = ("brand", "category"), ("attributes",)
TEXT_VIEWS = {"3": THREE, "3+cat": THREE + (CAT_VIEW,), "3+attr": THREE + (ATTR_VIEW,),
              "3+cat+attr": THREE + (CAT_VIEW, ATTR_VIEW)}


@dataclass(frozen=True)
class Variant:
    fit: str = "center_crop"
    aug: int = 0
    text: str = "3"
    hard: bool = False
    refit: bool = False


BASE = Variant()
IKEA_VARIANTS = {
    "baseline (centre crop, 3 text views)": BASE,
    "+ letterbox": replace(BASE, fit="letterbox"),
    "+ 2 augmented views": replace(BASE, aug=2),
    "+ 4 augmented views": replace(BASE, aug=4),
    "+ refit on train+val": replace(BASE, refit=True),
    "+ brand/category text view": replace(BASE, text="3+cat"),
    "+ attributes text view": replace(BASE, text="3+attr"),
    "+ hard negatives": replace(BASE, hard=True),
    "+ brand/category view + hard negatives": replace(BASE, text="3+cat", hard=True),
    "+ brand/category view + refit on train+val": replace(BASE, text="3+cat", refit=True),
}
GROCERY_VARIANTS = {
    "baseline (centre crop, 3 text views)": BASE,
    "+ letterbox": replace(BASE, fit="letterbox"),
    "+ 2 augmented views": replace(BASE, aug=2),
    "+ 8 augmented views (iconic photos only)": replace(BASE, aug=8),
    "+ brand/category text view": replace(BASE, text="3+cat"),
    "+ hard negatives": replace(BASE, hard=True),
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- statistics
def bootstrap(per_query: np.ndarray, base: np.ndarray | None = None, n: int = 2000, seed: int = 0) -> dict:
    """Mean with 95 % interval of a [seeds, Q] score matrix; paired difference vs ``base`` too."""
    m = per_query.mean(axis=0)
    idx = np.random.default_rng(seed).integers(0, len(m), size=(n, len(m)))
    out = {"mean": float(m.mean()), "lo": float(np.percentile(m[idx].mean(1), 2.5)),
           "hi": float(np.percentile(m[idx].mean(1), 97.5)),
           "seeds": [float(x) for x in per_query.mean(axis=1)]}
    if base is not None:
        d = m - base.mean(axis=0)
        out["diff"] = float(d.mean())
        out["diff_lo"], out["diff_hi"] = (float(np.percentile(d[idx].mean(1), q)) for q in (2.5, 97.5))
    return out


def fmt(r: dict) -> str:
    s = f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
    if "diff" in r:
        s += f"  {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]"
    return s


def table(title: str, rows: dict, cols: list[str]) -> None:
    log(f"\n{title}  (mean over seeds [95% CI]  difference vs baseline [95% CI], paired bootstrap over queries)")
    for name, r in rows.items():
        log(f"  {name:<42}" + "  |  ".join(f"{c}: {fmt(r[c])}" for c in cols))


# --------------------------------------------------------------------------- IKEA
def ikea(models: Path, cache: Path | None, work: Path, seeds: list[int], variants: dict) -> dict:
    products, _ = read_catalog(work / "ikea.jsonl")
    by_id = {p.id: p for p in products}
    split = json.loads((work / "ikea_split.json").read_text())
    spaces, pairs = {}, {}

    def data_for(v: Variant) -> PairData:
        if v.fit not in spaces:
            spaces[v.fit] = FeatureCache(Space.load(models, None, threads=2, image_fit=v.fit), cache, log=log)
        key = (v.fit, v.text, v.aug)
        if key not in pairs:
            fx = spaces[v.fit]
            d = build_pairs(products, fx, TEXT_VIEWS[v.text]).data
            index = {pid: i for i, pid in enumerate(d.product_ids)}
            trv = [index[i] for i in split["train"] + split["val"]]
            d = add_views(d, fx, trv, AugmentConfig(views=v.aug)) if v.aug else d
            pairs[key] = (d, index)
        return pairs[key]

    fx0 = FeatureCache(Space.load(models, None, threads=2), cache, log=log)

    def queries(ids):
        tc = [by_id[i].attributes["type"] + (f", {by_id[i].attributes['color']}" if by_id[i].attributes["color"] else "")
              for i in ids]
        return fx0.texts(tc, "query"), fx0.texts(tc, "passage")

    def score(res, d: PairData, q, p) -> dict:
        iv = apply_head(res.image_head, d.image_features)
        qt, pt = apply_head(res.text_head, q), apply_head(res.text_head, p)
        rel = np.arange(d.n_products)[:, None] == d.image_product[None, :]
        keep = rel.any(axis=1)
        t2i = first_relevant_rank((qt @ iv.T)[keep], rel[keep]) <= 10
        i2t = first_relevant_rank(iv @ pt.T, rel.T) <= 10
        return {"T2I R@10": t2i.astype(float), "I2T R@10": i2t.astype(float)}

    out = {"val": {}, "test": {}, "epochs": {}, "seconds": {}}
    per = {"val": {}, "test": {}}
    for name, v in variants.items():
        t0 = time.perf_counter()
        d, index = data_for(v)
        tr = d.subset([index[i] for i in split["train"]])
        va = d.subset([index[i] for i in split["val"]]).without_views()
        te = d.subset([index[i] for i in split["test"]]).without_views()
        qv, qt = queries(va.product_ids), queries(te.product_ids)
        hits = {"val": [], "test": []}
        epochs = []
        for s in seeds:
            cfg = TrainConfig(seed=s, hard_negatives=v.hard)
            res = train_heads(tr, va, cfg)
            epochs.append(res.best_epoch)
            hits["val"].append(score(res, va, *qv))
            if v.refit:
                full = d.subset([index[i] for i in split["train"] + split["val"]])
                res = train_heads(full, None, replace(cfg, epochs_max=max(1, res.best_epoch)))
            hits["test"].append(score(res, te, *qt))
        for part in ("val", "test"):
            per[part][name] = {k: np.stack([h[k] for h in hits[part]]) for k in hits[part][0]}
        out["epochs"][name] = epochs
        out["seconds"][name] = round(time.perf_counter() - t0, 1)
        log(f"IKEA {name}: best epochs {epochs}, {out['seconds'][name]}s; val T2I "
            f"{per['val'][name]['T2I R@10'].mean():.3f} I2T {per['val'][name]['I2T R@10'].mean():.3f}; test T2I "
            f"{per['test'][name]['T2I R@10'].mean():.3f} I2T {per['test'][name]['I2T R@10'].mean():.3f}")
        base = next(iter(variants))
        for part in ("val", "test"):   # after every variant: a long run that is stopped keeps its tables
            out[part] = {n: {k: bootstrap(a, None if n == base else per[part][base][k]) for k, a in m.items()}
                         for n, m in per[part].items()}
            table(f"IKEA {part} ({len(split[part])} products), seeds {seeds}", out[part], ["T2I R@10", "I2T R@10"])
    return out


# --------------------------------------------------------------------------- Grocery
def grocery(models: Path, cache: Path | None, work: Path, seeds: list[int], variants: dict,
            settings: str = "ab") -> dict:
    shelf = {s: [json.loads(line) for line in (work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    out, per = {}, {}
    capped = work / "grocery_with_shelf_cap64.jsonl"
    if not capped.is_file():  # ingest (and so training) takes at most 64 images per product
        from plugin_ingest.schema import Limits

        cap = Limits().max_images
        rows = [json.loads(line) for line in (work / "grocery_with_shelf.jsonl").open(encoding="utf-8")]
        capped.write_text("".join(json.dumps({**r, "images": r["images"][:cap]}, ensure_ascii=False) + "\n"
                                  for r in rows), encoding="utf-8")
    for setting, catalog in (("a: iconic only", "grocery.jsonl"), ("b: + train shelf photos", capped.name)):
        if setting[0] not in settings:
            continue
        products, _ = read_catalog(work / catalog)
        pid = [p.id for p in products]
        spaces: dict = {}
        per[setting] = {"val": {}, "test": {}}
        out[setting] = {"chosen": {}, "epochs": {}}
        for name, v in variants.items():
            if setting.startswith("b") and v.aug > 2:
                continue   # many views of 2,640 shelf photos: not affordable here
            t0 = time.perf_counter()
            if v.fit not in spaces:
                spaces[v.fit] = FeatureCache(Space.load(models, None, threads=2, image_fit=v.fit), cache, log=log)
            fx = spaces[v.fit]
            data = build_pairs(products, fx, TEXT_VIEWS[v.text]).data
            if v.aug:
                data = add_views(data, fx, np.arange(data.n_products), AugmentConfig(views=v.aug))
            ev = {}
            for part in ("val", "test"):
                b = fx.images([s["image"] for s in shelf[part]])
                ev[part] = (b.features, np.array([pid.index(shelf[part][i]["relevant"][0]) for i in b.ok]))
            val = PairData(ev["val"][0], ev["val"][1], data.text_vectors, data.view_product, data.product_ids,
                           data.categories)
            hits = {"val": [], "test": []}
            chosen, epochs = [], []
            for s in seeds:
                res = train_heads(data, val, TrainConfig(seed=s, hard_negatives=v.hard))
                cls = train_classifier(data, val, ClassifierConfig(seed=s))
                epochs.append(res.best_epoch)
                scorers = {part: scores(res, cls, data, ev[part][0], len(pid)) for part in ("val", "test")}
                best = max(((np.mean(np.argmax(sc, 1) == ev["val"][1]), key) for key, sc in scorers["val"].items()))
                chosen.append(best[1])
                for part in ("val", "test"):
                    hits[part].append((np.argmax(scorers[part][best[1]], 1) == ev[part][1]).astype(float))
            for part in ("val", "test"):
                per[setting][part][name] = np.stack(hits[part])
            out[setting]["chosen"][name] = chosen
            out[setting]["epochs"][name] = epochs
            log(f"Grocery {setting} {name}: epochs {epochs}, scorers {chosen}, {time.perf_counter() - t0:.1f}s; "
                f"val top-1 {per[setting]['val'][name].mean():.3f}, test top-1 {per[setting]['test'][name].mean():.3f}")
        base = next(iter(per[setting]["val"]))
        for part in ("val", "test"):
            out[setting][part] = {n: {"top-1": bootstrap(a, None if n == base else per[setting][part][base])}
                                  for n, a in per[setting][part].items()}
            table(f"Grocery {setting}, {part} shelf photos, seeds {seeds}", out[setting][part], ["top-1"])
    return out


def scores(res, cls, data: PairData, x: np.ndarray, n_products: int) -> dict:
    """Candidate scorers of shelf photos against the 81 products (chosen among on val)."""
    def per_product_max(sim: np.ndarray) -> np.ndarray:
        s = np.full((sim.shape[0], n_products), -np.inf, dtype=np.float32)
        for p in range(n_products):
            cols = data.image_product == p
            if cols.any():
                s[:, p] = sim[:, cols].max(axis=1)
        return s

    fi = lambda f: apply_head(res.image_head, f)  # noqa: E731
    raw = per_product_max(normalize(x) @ normalize(data.image_features).T)
    shared = per_product_max(fi(x) @ fi(data.image_features).T)
    i2t = fi(x) @ apply_head(res.text_head, data.first_view()).T
    prob = _softmax_apply(cls.params, x)
    prob = prob[:, [cls.categories.index(" > ".join(data.categories[p])) for p in range(n_products)]]
    out = {"raw NN": raw, "shared NN": shared, "image->text": i2t}
    for lam in (0.1, 0.3, 0.5, 1.0, 2.0):
        out[f"raw NN + {lam} cls"] = raw + lam * prob
        out[f"shared NN + {lam} cls"] = shared + lam * prob
    return out


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CMSEARCH_SHARED_DATA") or mc.DEFAULT_DATA))
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", choices=["ikea", "grocery"], default=None)
    ap.add_argument("--variants", default=None, help="comma-separated variant names to run (default: all)")
    ap.add_argument("--grocery-settings", default="ab", help="a: iconic photos only, b: + train shelf photos")
    args = ap.parse_args(argv)
    from models.manifest import default_models_dir
    models = args.models or default_models_dir()
    if not (models / "manifest.json").is_file():
        print(f"skipped: no built models at {models}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="cmsearch-looks-"))
    try:
        if not (work / "ikea_split.json").is_file():
            mc.write_all(work, args.data)
    except mc.DataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    pick = (lambda vs: {k: v for k, v in vs.items() if args.variants is None or k in args.variants.split(",")
                        or k.startswith("baseline")})
    results: dict = {"seeds": seeds}
    t0 = time.perf_counter()
    if args.only in (None, "ikea"):
        results["ikea"] = ikea(models, args.cache, work, seeds, pick(IKEA_VARIANTS))
    if args.only in (None, "grocery"):
        results["grocery"] = grocery(models, args.cache, work, seeds, pick(GROCERY_VARIANTS), args.grocery_settings)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    path = work / f"looks_{args.only or 'all'}{'' if args.grocery_settings == 'ab' else '_' + args.grocery_settings}.json"
    path.write_text(json.dumps(results, indent=1))
    log(f"\nresults: {path} ({results['seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
