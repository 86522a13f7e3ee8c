"""Training the alignment heads and the category classifier (models.training, torch).

Mechanics are tested on synthetic correlated features (fast, no models needed); one test trains
on real IKEA products when the shared data and the built models are present, else it skips.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training.catalog import read_catalog  # noqa: E402
from models.training.classifier import ClassifierConfig, topk_accuracy, train_classifier  # noqa: E402
from models.training.metrics import first_relevant_rank, retrieval_metrics  # noqa: E402
from models.training.pairs import NotEnoughPairs, PairData, check_pairs, split_products  # noqa: E402
from models.training.train_catalog import evaluate_split, project  # noqa: E402
from models.training.trainer import TrainConfig, multi_positive_infonce, train_heads  # noqa: E402

FAST = TrainConfig(epochs_max=40, patience=4, batch_size=128)


def synthetic_pairs(n_products=400, images_per_product=2, noise=6.0, seed=0, n_cats=6) -> PairData:
    """Images and texts generated from a shared 32-d latent per product, plus heavy noise.

    The latent also decides the category, so the classifier has a signal to learn too.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_products, 32))
    a, b = rng.normal(size=(32, 256)), rng.normal(size=(32, 64))
    owner = np.repeat(np.arange(n_products), images_per_product)
    img = np.maximum(z[owner] @ a + noise * rng.normal(size=(len(owner), 256)), 0)
    txt = z @ b + noise * rng.normal(size=(n_products, 64))
    cat_of = np.argmax(z[:, :n_cats], axis=1)
    cats = [(f"Top{c % 2}", f"Leaf{c}") for c in cat_of]
    return PairData(img.astype(np.float32), owner, txt.astype(np.float32), np.arange(n_products),
                    [f"p{i}" for i in range(n_products)], cats)


@pytest.fixture(scope="module")
def data():
    return synthetic_pairs()


@pytest.fixture(scope="module")
def split(data):
    return split_products(data.products_with_images(), val=60, test=80, seed=1)


# --------------------------------------------------------------------------- catalog + refusals
def write_catalog(tmp: Path, records: list[dict]) -> Path:
    path = tmp / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def tiny_png(path: Path, seed: int) -> str:
    from PIL import Image
    arr = np.random.default_rng(seed).integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path.name


def test_catalog_reader_resolves_images_and_counts_problems(tmp_path):
    name = tiny_png(tmp_path / "a.png", 0)
    cat = write_catalog(tmp_path, [
        {"id": 1, "title": "Red chair", "brand": "ACME", "category": "Furniture > Chairs", "images": [name]},
        {"id": 2, "title": "Lamp", "images": ["https://example.com/x.jpg", "missing.jpg"]},
        {"title": "no id"},
    ])
    products, report = read_catalog(cat)
    assert [p.id for p in products] == ["1", "2"]
    assert products[0].images == (str((tmp_path / name).resolve()),)
    assert products[0].category == ("Furniture", "Chairs")
    assert products[0].text() == "Red chair. ACME. Furniture > Chairs"
    assert report.image_urls == 1 and report.missing_images == 1 and len(report.skipped_records) == 1


def test_catalog_without_images_is_refused_before_loading_models(tmp_path):
    from models.training.train_catalog import run

    cat = write_catalog(tmp_path, [{"id": i, "title": f"product {i}"} for i in range(200)])
    with pytest.raises(NotEnoughPairs, match="no usable image-text pairs"):
        run(cat, tmp_path / "no-models-here", tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_catalog_with_only_urls_says_why(tmp_path):
    from models.training.train_catalog import run

    cat = write_catalog(tmp_path, [{"id": i, "title": "x", "images": [f"http://h/{i}.jpg"]} for i in range(80)])
    with pytest.raises(NotEnoughPairs, match="80 image URLs skipped"):
        run(cat, tmp_path / "no-models-here", tmp_path / "out", log=lambda s: None)


def test_fewer_than_50_pairs_is_refused(tmp_path):
    from models.training.train_catalog import run

    recs = [{"id": i, "title": f"p{i}", "images": [tiny_png(tmp_path / f"{i}.png", i)]} for i in range(49)]
    with pytest.raises(NotEnoughPairs, match="only 49 image-text pairs"):
        run(write_catalog(tmp_path, recs), tmp_path / "no-models-here", tmp_path / "out", log=lambda s: None)
    check_pairs(50, 50, n_records=50)  # exactly 50 is enough


# --------------------------------------------------------------------------- splits, metrics, loss
def test_split_is_reproducible_disjoint_and_complete():
    a = split_products(range(100), val=0.1, test=20, seed=3)
    b = split_products(range(100), val=0.1, test=20, seed=3)
    c = split_products(range(100), val=0.1, test=20, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert not np.array_equal(a.test, c.test)
    assert a.sizes() == {"train": 70, "val": 10, "test": 20}
    assert sorted(np.concatenate([a.train, a.val, a.test]).tolist()) == list(range(100))
    with pytest.raises(NotEnoughPairs):
        split_products(range(10), val=5, test=5)


def test_metrics_on_a_known_ranking():
    sim = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    rel = np.array([[False, True, False], [True, False, False], [False, False, True]])
    ranks = first_relevant_rank(sim, rel)
    assert ranks.tolist() == [2, 3, 3]  # ties count against the query
    m = retrieval_metrics(sim, rel, ks=(1, 2), precision_ks=(1,))
    assert m["R@1"] == 0 and m["R@2"] == pytest.approx(1 / 3) and m["MRR"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 3) / 3)


def test_multi_positive_loss_reduces_to_clip_with_one_image_per_product():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(2.0)
    logits = scale.exp() * img @ txt.T
    target = torch.arange(6)
    clip = 0.5 * (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target))
    ours = multi_positive_infonce(img, txt, target, scale)
    assert torch.allclose(ours, clip, atol=1e-6)
    # Two photos of product 0: both are positives, so putting both next to its text lowers the loss.
    img2 = torch.cat([img, txt[:1]])
    owner = torch.cat([target, torch.tensor([0])])
    far = torch.cat([img, -txt[:1]])
    assert multi_positive_infonce(img2, txt, owner, scale) < multi_positive_infonce(far, txt, owner, scale)


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("text_head", ["identity", "linear"])
def test_trained_heads_beat_untrained_on_held_out_products(data, split, text_head):
    cfg = replace(FAST, text_head=text_head, dim=32)
    res = train_heads(data.subset(split.train), data.subset(split.val), cfg)
    untrained = train_heads(data.subset(split.train), None, replace(cfg, epochs_max=0))
    test = data.subset(split.test)
    trained = evaluate_split(*project(res, test.image_features, test.first_view()), test)
    base = evaluate_split(*project(untrained, test.image_features, test.first_view()), test)
    assert trained["text_to_image"]["R@10"] > base["text_to_image"]["R@10"] + 0.3
    assert trained["image_to_text"]["R@10"] > base["image_to_text"]["R@10"] + 0.3
    expected_dim = data.text_vectors.shape[1] if text_head == "identity" else 32
    assert res.image_head.out_dim == res.text_head.out_dim == expected_dim


def test_same_seed_same_heads_other_seed_other_heads(data, split):
    tr, va = data.subset(split.train), data.subset(split.val)
    cfg = replace(FAST, epochs_max=5, patience=100)
    a, b = train_heads(tr, va, cfg), train_heads(tr, va, cfg)
    c = train_heads(tr, va, replace(cfg, seed=1))
    wa, wb, wc = a.image_head.layers[0][0], b.image_head.layers[0][0], c.image_head.layers[0][0]
    assert np.array_equal(wa, wb) and a.history == b.history
    assert not np.allclose(wa, wc)


def test_early_stopping_stops_and_restores_the_best_epoch():
    # Few training products and noisy features: a linear head over-fits within a few epochs.
    d = synthetic_pairs(n_products=160, noise=8.0, seed=5)
    sp = split_products(d.products_with_images(), val=50, test=10, seed=0)
    tr, va = d.subset(sp.train), d.subset(sp.val)
    res = train_heads(tr, va, replace(FAST, epochs_max=300, patience=5, lr=3e-3, batch_size=32))
    assert res.epochs_run < 300
    assert res.epochs_run == res.best_epoch + 5
    scores = [h["val_score"] for h in res.history]
    assert max(scores) <= scores[res.best_epoch - 1] + FAST.min_delta  # later gains were below min_delta
    # The returned heads are the best epoch's, not the last epoch's.
    t2i, i2t = evaluate_split(*project(res, va.image_features, va.first_view()), va).values()
    assert 0.5 * (t2i["MRR"] + i2t["MRR"]) == pytest.approx(res.best_val["score"], abs=1e-4)
    assert res.best_val["score"] > scores[-1]


# --------------------------------------------------------------------------- classifier
def test_classifier_learns_categories_and_is_reproducible(data, split):
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    cfg = ClassifierConfig(epochs_max=60, patience=5)
    res = train_classifier(tr, va, cfg)
    again = train_classifier(tr, va, cfg)
    assert np.array_equal(res.params.layers[0][0], again.params.layers[0][0])
    assert res.categories == sorted(set(" > ".join(c) for c in tr.categories))
    from models.training.train_catalog import _softmax_apply
    from models.training.classifier import leaf_labels
    probs = _softmax_apply(res.params, te.image_features)
    _, labels = leaf_labels(te, res.categories)
    acc = topk_accuracy(probs, labels)
    assert acc["top1"] > 2.0 / len(res.categories)  # well above chance (1/6)
    assert acc["top5"] >= acc["top1"]


def test_classifier_needs_two_categories(data, split):
    one = PairData(data.image_features, data.image_product, data.text_vectors, data.view_product,
                   data.product_ids, [("Only",)] * data.n_products)
    assert train_classifier(one, None) is None


# --------------------------------------------------------------------------- real data (optional)
def test_real_ikea_subset_trains_heads_that_beat_untrained(shared_data, tmp_path):
    """300 IKEA products through the real encoders (features cached for later runs)."""
    from models.manifest import default_models_dir

    models_dir = Path(os.environ.get("CMSEARCH_MODELS_DIR") or default_models_dir())
    if not (models_dir / "manifest.json").is_file():
        pytest.skip(f"no built models at {models_dir} (run `cmsearch models build`)")
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import make_catalogs
    from models.heads import Heads
    from models.training.train_catalog import TrainingConfig, run

    recs = [r for r in make_catalogs.ikea_records(shared_data) if r["images"]][:300]
    cat = write_catalog(tmp_path, recs)
    cfg = TrainingConfig(val=50, test=60, train=TrainConfig(epochs_max=60))
    lines: list[str] = []
    manifest = run(cat, models_dir, tmp_path / "heads", cfg, log=lines.append)
    ev = manifest["eval"]
    assert ev["trained heads"]["text_to_image"]["R@10"] > ev["untrained head"]["text_to_image"]["R@10"] + 0.15
    heads = Heads.load(tmp_path / "heads")
    assert heads.dim == 384 and heads.has_classifier
    assert any("retrieval on test products" in s for s in lines)
    # every product trained on (nothing held out): heads, no evaluation, no crash
    cfg = TrainingConfig(val=0, test=0, train=TrainConfig(epochs_max=3), int8=None)
    manifest = run(cat, models_dir, tmp_path / "heads_all", cfg, log=lines.append)
    assert manifest["eval"] == {"split": "none (every product was trained on)"}
    assert Heads.load(tmp_path / "heads_all").dim == 384


def test_cli_refuses_a_catalog_without_images(tmp_path):
    from click.testing import CliRunner

    from cmsearch.cli import cli

    cat = write_catalog(tmp_path, [{"id": i, "title": f"product {i}"} for i in range(100)])
    result = CliRunner().invoke(cli, ["train", str(cat), "--models", str(tmp_path / "models")])
    assert result.exit_code != 0
    assert "refusing to train" in result.output and "no usable image-text pairs" in result.output


# --------------------------------------------------------------------------- glossaries / catalogs
def _make_catalogs():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import make_catalogs
    return make_catalogs


def test_colour_glossary_composes_chinese_colours():
    mc = _make_catalogs()
    assert mc.color_zh("White") == "白色"
    assert mc.color_zh("Nolhaga dark grey") == "深灰色"          # series name dropped, modifier kept
    assert mc.color_zh("White stained oak effect") == "白色染色橡木纹"
    assert mc.color_zh("Softwood,white") == "软木、白色"
    assert mc.base_colors("Black-brown, stainless steel") == {"black", "brown"}


def test_glossaries_cover_the_development_data(shared_data):
    mc = _make_catalogs()
    ikea = mc.ikea_records(shared_data)
    assert len(ikea) == 2191 and all(" / " in r["title"] for r in ikea)
    assert all(r["attributes"]["type_zh"] for r in ikea)
    grocery = mc.grocery_records(shared_data, shelf_photos=True)
    assert len(grocery) == 81 and sum(len(r["images"]) for r in grocery) == 81 + 2640
    oat = next(r for r in grocery if r["id"] == "Oatly-Oat-Milk")
    assert oat["title"] == "Oatly 燕麦奶 / Oatly Oat Milk" and oat["brand"] == "Oatly"
    assert oat["category"] == ["Packages", "Oat Milk", "Oatly Oat Milk"]
    split = mc.ikea_split(ikea)
    assert len(split["test"]) == 400 and not set(split["test"]) & set(split["train"])
    zh = mc.zh_queries(ikea, split["test"])
    assert len(zh) >= 40 and all(q["relevant"] for q in zh)


def test_refusal_messages_name_the_causes():
    with pytest.raises(NotEnoughPairs, match=r"only 30 .*\(30 records; 3 image files not found\)"):
        check_pairs(30, 30, n_records=30, missing_images=3)
    with pytest.raises(NotEnoughPairs, match=r"only 30 .*\(30 records\)\. Add product photos"):
        check_pairs(30, 30, n_records=30)
