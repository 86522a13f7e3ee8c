"""Compare image backbones (MobileNetV2, EfficientNet-Lite0): encode time and relevance with trained heads.

For each models directory given (``--models NAME=DIR``, one per backbone, built with
``cmsearch models build --image-backbone ...``):

- encode time: onnxruntime fp32, ``--threads`` intra-op threads (2), batch 1, preprocessed real
  photos (decode excluded), median and p90 over ``--runs`` images after a warm-up;
- IKEA: heads trained with the `cmsearch train` defaults (TrainConfig, the default text views)
  on the "train" products of ``ikea_split.json``, early stopping on its "val" products, for
  each seed; "type, color" -> photo R@10 (pool: the split's photos) and photo -> text R@10, on
  val and on test;
- Grocery: shelf photo -> product top-1 on the val and test shelf photos, (a) iconic photos only,
  raw-feature nearest neighbour (no heads); (a) and (b, + train shelf photos as product images)
  with the protocol of ``eval_looks.py``: heads and classifier trained on all 81 products, early
  stopping on the val shelf photos, the scorer (``eval_looks.scores``) chosen on val per seed.

``--concat`` adds one more backbone, the first two joined: each photo's two unit feature vectors,
each L2-normalised again, laid side by side and scaled by 1/sqrt(2) (:func:`concat_features`).
Equal weights because there is no reason to prefer either tower before val has spoken, and
normalising each block first keeps one tower's feature scale from outweighing the other's: the
joined vector is unit-length and its cosine is the mean of the two towers' cosines, which is what
the raw-feature scorers see. The heads standardise every input dimension, so for them the block
weights do not matter; a tuned weight would be one more setting to choose on val.

Per-query results are averaged over seeds, and every backbone after the first is compared with
the first by a paired bootstrap over the queries (95 % interval of the mean difference).

Usage::

    python bench/bench_backbones.py --work W --models mobilenet_v2=DIR1 --models efficientnet_lite0=DIR2
        [--concat] [--seeds 0,1,2] [--cache DIR] [--data ../shared/data] [--json OUT]
        [--skip timing|ikea|grocery-a|grocery-b]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import make_catalogs as mc  # noqa: E402
from eval_looks import scores  # noqa: E402
from models.image_encoder import ImageEncoder  # noqa: E402
from models.images import load_image  # noqa: E402
from models.space import Space  # noqa: E402
from models.training.catalog import read_catalog  # noqa: E402
from models.training.classifier import ClassifierConfig, train_classifier  # noqa: E402
from models.training.features import FeatureCache, ImageBatch  # noqa: E402
from models.training.metrics import first_relevant_rank, normalize  # noqa: E402
from models.training.pairs import PairData  # noqa: E402
from models.training.train_catalog import DEFAULT_VIEWS, apply_head, build_pairs  # noqa: E402
from models.training.trainer import TrainConfig, train_heads  # noqa: E402


def log(msg: str = "") -> None:
    print(msg, flush=True)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean of b - a, 2.5 %, 97.5 %) over queries resampled with replacement."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_ci(x: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = np.asarray(x, np.float64)[rng.integers(0, len(x), (n, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ----------------------------------------------------------------------------- concatenation
def concat_features(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of ``a`` and ``b`` (the same photos), each L2-normalised, joined and scaled to unit length."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"cannot join features of shapes {a.shape} and {b.shape}: one row per photo in each")
    return (np.concatenate([normalize(a), normalize(b)], axis=1) / np.sqrt(2.0)).astype(np.float32)


class ConcatFeatures:
    """Two backbones' feature caches as one: image features joined by :func:`concat_features`
    (only photos that decoded in both), texts from the first (both share the text encoder)."""

    def __init__(self, first: FeatureCache, second: FeatureCache):
        self.first, self.second = first, second

    def images(self, paths, **kw) -> ImageBatch:
        a, b = self.first.images(paths, **kw), self.second.images(paths, **kw)
        ok = np.intersect1d(a.ok, b.ok)
        ra, rb = np.searchsorted(a.ok, ok), np.searchsorted(b.ok, ok)
        feats = concat_features(a.features[ra], b.features[rb]) if len(ok) else np.zeros((0, 0), np.float32)
        return ImageBatch(features=feats, logits=None, ok=ok, errors=sorted(set(a.errors) | set(b.errors)),
                          encoded=a.encoded + b.encoded, seconds=a.seconds + b.seconds)

    def texts(self, texts, kind: str = "passage", **kw) -> np.ndarray:
        return self.first.texts(texts, kind, **kw)


# ----------------------------------------------------------------------------- timing
def encode_times(dirs: dict[str, Path], photos: list[str], threads: int, runs: int) -> dict[str, dict]:
    """Per backbone, ms per image (batch 1), the backbones interleaved image by image, so that a
    shared machine's load falls on all of them alike."""
    encs = {name: ImageEncoder(d, threads=threads) for name, d in dirs.items()}
    pix = {name: [enc_pre(e, p) for p in photos[:runs]] for name, e in encs.items()}
    times: dict[str, list[float]] = {name: [] for name in encs}
    for i in range(len(photos[:runs])):
        for name, e in encs.items():
            t0 = time.perf_counter()
            e.session.run([e.outputs["feature"]], {e.input_name: pix[name][i]})
            if i >= 10:                                            # the first ten warm up
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "n": len(t),
                   "variant": encs[name].variant} for name, t in times.items()}


def enc_pre(enc: ImageEncoder, path: str) -> np.ndarray:
    from models.image_encoder import preprocess
    return preprocess(load_image(path), enc.preprocess_spec)[None]


# ----------------------------------------------------------------------------- IKEA
def subset(data: PairData, ids: list[str]) -> PairData:
    index = {pid: i for i, pid in enumerate(data.product_ids)}
    return data.subset([index[i] for i in ids])


def heads(res):
    return (lambda x: apply_head(res.image_head, x)), (lambda t: apply_head(res.text_head, t))


def ikea_hits(fx: FeatureCache, work: Path, seeds: list[int]) -> dict:
    """Per-query hit@10 arrays (mean over seeds) for val and test, t2i and i2t."""
    products, _ = read_catalog(work / "ikea.jsonl")
    by_id = {p.id: p for p in products}
    split = json.loads((work / "ikea_split.json").read_text())
    data = build_pairs(products, fx, DEFAULT_VIEWS).data
    tr, va, te = (subset(data, split[k]) for k in ("train", "val", "test"))
    out = {}
    sets = {"val": va, "test": te}
    queries = {}
    for name, part in sets.items():
        tc = [by_id[i].attributes["type"] + (f", {by_id[i].attributes['color']}" if by_id[i].attributes["color"]
                                             else "") for i in part.product_ids]
        queries[name] = (fx.texts(tc, "query"), fx.texts(tc, "passage"))
    for seed in seeds:
        res = train_heads(tr, va, TrainConfig(seed=seed))
        fi, ft = heads(res)
        log(f"    seed {seed}: best epoch {res.best_epoch}/{res.epochs_run} ({res.seconds:.1f} s)")
        for name, part in sets.items():
            q, p = queries[name]
            img = fi(part.image_features)
            rel = np.arange(part.n_products)[:, None] == part.image_product[None, :]
            t2i = first_relevant_rank(ft(q) @ img.T, rel) <= 10
            i2t = first_relevant_rank(img @ ft(p).T, rel.T) <= 10
            for key, hits in ((f"{name} t2i R@10", t2i), (f"{name} i2t R@10", i2t)):
                out.setdefault(key, []).append(hits.astype(np.float64))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


# ----------------------------------------------------------------------------- Grocery
def grocery_hits(fx, work: Path, seeds: list[int], settings: str = "ab") -> dict:
    """Per-query top-1 arrays (mean over seeds) for the val and test shelf photos; settings "a", "b"."""
    shelf = {s: [json.loads(line) for line in (work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    batches = {s: fx.images([q["image"] for q in shelf[s]]) for s in shelf}
    out: dict[str, list] = {}
    capped = work / "grocery_with_shelf_cap64.jsonl"   # ingest's and training's limit is 64 images a product
    if "b" in settings and not capped.is_file():
        capped.write_text("".join(json.dumps({**r, "images": r["images"][:64]}, ensure_ascii=False) + "\n" for r in
                                  (json.loads(line) for line in (work / "grocery_with_shelf.jsonl").open())),
                          encoding="utf-8")
    for variant, catalog in (("a", "grocery.jsonl"), ("b", capped.name)):
        if variant not in settings:
            continue
        products, _ = read_catalog(work / catalog)
        pid = [p.id for p in products]
        data = build_pairs(products, fx, DEFAULT_VIEWS).data
        # a product the catalog lacks (no usable photo) cannot be found: its queries count as misses
        where = {p: i for i, p in enumerate(pid)}
        truth = {s: np.array([where.get(shelf[s][i]["relevant"][0], -1) for i in batches[s].ok]) for s in shelf}
        if variant == "a":
            for s in shelf:
                sim = normalize(batches[s].features) @ normalize(data.image_features).T
                best = np.full((sim.shape[0], len(pid)), -np.inf, np.float32)
                for p in range(len(pid)):
                    cols = data.image_product == p
                    if cols.any():
                        best[:, p] = sim[:, cols].max(axis=1)
                out[f"{s} shelf->product top-1, (a) iconic only, raw NN"] = [
                    (best.argmax(axis=1) == truth[s]).astype(np.float64)]
        label = {"a": "(a) iconic only", "b": "(b) + train shelf photos"}[variant]
        known = truth["val"] >= 0
        val = PairData(batches["val"].features[known], truth["val"][known], data.text_vectors, data.view_product,
                       data.product_ids, data.categories)
        for seed in seeds:   # eval_looks' protocol: heads + classifier, the scorer chosen on val
            t0 = time.perf_counter()
            res = train_heads(data, val, TrainConfig(seed=seed))
            cls = train_classifier(data, val, ClassifierConfig(seed=seed))
            sc = {s: scores(res, cls, data, batches[s].features, len(pid)) for s in shelf}
            chosen = max((np.mean(np.argmax(v, 1) == truth["val"]), k) for k, v in sc["val"].items())[1]
            log(f"    grocery {variant} seed {seed}: best epoch {res.best_epoch}/{res.epochs_run}, scorer {chosen!r} "
                f"({time.perf_counter() - t0:.1f} s)")
            for s in shelf:
                out.setdefault(f"{s} shelf->product top-1, {label}, scorer chosen on val", []).append(
                    (np.argmax(sc[s][chosen], 1) == truth[s]).astype(np.float64))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--models", action="append", required=True, help="NAME=DIR (repeatable; the first is the baseline)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CMSEARCH_SHARED_DATA") or mc.DEFAULT_DATA))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--skip", action="append", default=[],
                    help="timing|ikea|grocery|grocery-a|grocery-b (repeatable; grocery: both settings)")
    ap.add_argument("--concat", action="store_true", help="also the first two backbones' features joined")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    backbones = dict(m.split("=", 1) for m in args.models)
    if args.concat and len(backbones) < 2:
        ap.error("--concat needs two --models")
    try:
        if not (args.work / "ikea_split.json").is_file():   # catalogs already there are reused as they are
            mc.write_all(args.work, args.data)
    except mc.DataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    photos = [str(args.data / "ikea" / json.loads(line)["image"])
              for line in (args.data / "ikea" / "products.jsonl").open() if json.loads(line).get("image")]
    pair = list(backbones)[:2]
    concat = "+".join(pair) if args.concat else None
    results: dict[str, dict] = {name: {} for name in [*backbones, *([concat] if concat else [])]}
    if "timing" not in args.skip:
        for name, t in encode_times({n: Path(d) for n, d in backbones.items()}, photos, args.threads,
                                    args.runs).items():
            results[name]["encode"] = t
            log(f"{name:20} encode batch 1, {args.threads} threads: median {t['median_ms']:.2f} ms, "
                f"p90 {t['p90_ms']:.2f} ms ({t['variant']}, {t['n']} photos, interleaved)")
        if concat:   # both towers run on every photo
            results[concat]["encode"] = {"median_ms_sum": sum(results[n]["encode"]["median_ms"] for n in pair)}
            log(f"{concat}: both towers, sum of medians {results[concat]['encode']['median_ms_sum']:.2f} ms")
    groc = "".join(s for s in "ab" if not {"grocery", f"grocery-{s}"} & set(args.skip))
    caches = {name: FeatureCache(Space.load(d, None, strict=True, threads=args.threads), args.cache, log=log)
              for name, d in backbones.items()}
    if concat:
        caches[concat] = ConcatFeatures(caches[pair[0]], caches[pair[1]])
    for name, fx in caches.items():
        log(f"== {name} ({backbones.get(name, 'joined features')})")
        hits = {}
        if "ikea" not in args.skip:
            hits.update(ikea_hits(fx, args.work, seeds))
        if groc:
            hits.update(grocery_hits(fx, args.work, seeds, groc))
        results[name]["hits"] = hits
    if not any(r.get("hits") for r in results.values()):
        return 0
    base = next(iter(backbones))
    log(f"\nseeds {seeds}; 95 % intervals: bootstrap over queries; diff: paired bootstrap vs {base}")
    keys = list(results[base]["hits"])
    for key in keys:
        log(f"{key} (n={len(results[base]['hits'][key])})")
        for name in results:
            h = results[name]["hits"][key]
            lo, hi = bootstrap_ci(h)
            line = f"  {name:20} {h.mean():.3f} [{lo:.3f}, {hi:.3f}]"
            if name != base:
                d, dlo, dhi = paired_bootstrap(results[base]["hits"][key], h)
                line += f"   diff {d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
            log(line)
    if args.json:
        args.json.write_text(json.dumps({n: {"encode": r.get("encode"),
                                             "hits": {k: v.tolist() for k, v in r["hits"].items()}}
                                         for n, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
