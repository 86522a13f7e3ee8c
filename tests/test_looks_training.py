"""Training for looks (issue 12): augmented views cached, letterbox fit declared by the space, refit on
every product, the int8 tower's gate, progress lines without a terminal.

Pure parts run without models; the rest use the built models (skipped until `cmsearch models build`
has run) on small catalogs of generated photos, in a private copy of the models directory so that
no test registers heads in the user's own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from models.image_encoder import preprocess  # noqa: E402
from models.space import Space, SpaceError  # noqa: E402
from models.training.augment import AugmentConfig, augment, view_rng  # noqa: E402
from models.training.pairs import PairData  # noqa: E402

SPEC = {"resize": 256, "interpolation": "bilinear", "center_crop": 224, "rescale": 1 / 255,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _photo(seed: int, w: int = 96, h: int = 64) -> Image.Image:
    """A photo with structure: a coloured block on a gradient, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = (x * 255 // w).astype(np.uint8)
    arr[..., 1] = (y * 255 // h).astype(np.uint8)
    arr[..., 2] = int(rng.integers(0, 255))
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    arr[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 255, 3)
    return Image.fromarray(arr)


# --------------------------------------------------------------------------- pure parts
def test_augmented_view_is_a_function_of_photo_seed_and_settings():
    img, cfg = _photo(0), AugmentConfig(views=2)
    a = np.asarray(augment(img, view_rng("photo-a", 0, cfg), cfg))
    b = np.asarray(augment(img, view_rng("photo-a", 0, cfg), cfg))
    c = np.asarray(augment(img, view_rng("photo-a", 1, cfg), cfg))
    assert a.shape == b.shape and np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert AugmentConfig(views=2).digest() == AugmentConfig(views=5).digest()     # view 0 is view 0
    assert AugmentConfig(jitter=0.1).digest() != cfg.digest()
    with pytest.raises(ValueError):
        AugmentConfig(views=-1)


def test_letterbox_keeps_the_whole_photo_on_white():
    img = Image.new("RGB", (200, 100), (0, 0, 0))           # a wide black photo
    boxed = preprocess(img, {**SPEC, "fit": "letterbox"})
    crop = preprocess(img, SPEC)
    assert boxed.shape == crop.shape == (3, 224, 224)
    white = (1.0 - np.asarray(SPEC["mean"])) / np.asarray(SPEC["std"])
    black = (0.0 - np.asarray(SPEC["mean"])) / np.asarray(SPEC["std"])
    assert np.allclose(boxed[:, 0, :], white[:, None], atol=1e-5)          # white band above ...
    assert np.allclose(boxed[:, 112, :], black[:, None], atol=1e-5)        # ... the photo, all of it
    assert np.allclose(crop, black[:, None, None], atol=1e-5)              # the centre crop is all photo
    with pytest.raises(Exception, match="unknown image fit"):
        preprocess(img, {**SPEC, "fit": "stretch"})


def test_views_travel_with_their_photos_and_stay_out_of_evaluation():
    feats = np.eye(4, 8, dtype=np.float32)
    d = PairData(feats, np.array([0, 1, 2, 3]), np.ones((4, 3), np.float32), np.arange(4), list("abcd"),
                 view_features=np.arange(5 * 8, dtype=np.float32).reshape(5, 8), view_of=np.array([0, 0, 2, 3, 3]))
    s = d.subset([3, 2])
    assert s.image_product.tolist() == [1, 0]                                 # photo rows keep their order
    assert s.n_views == 3 and s.view_of.tolist() == [0, 1, 1]                # each view still points at its photo
    assert np.array_equal(s.view_features[0], d.view_features[2])
    assert s.without_views().n_views == 0
    assert d.subset([1]).n_views == 0


def test_training_draws_each_photo_or_one_of_its_views():
    from models.training.trainer import TrainConfig, _Trainer

    rng = np.random.default_rng(0)
    n = 40
    d = PairData(rng.normal(size=(n, 16)).astype(np.float32), np.arange(n), rng.normal(size=(n, 8)).astype(np.float32),
                 np.arange(n), [str(i) for i in range(n)],
                 view_features=rng.normal(size=(2 * n, 16)).astype(np.float32), view_of=np.repeat(np.arange(n), 2))
    tr = _Trainer(d, TrainConfig(batch_size=16, seed=1))
    assert tr.choices.shape == (n, 3) and (tr.n_choices == 3).all()
    assert tr.x_img.shape[0] == 3 * n
    assert sorted(tr.choices[5].tolist()) == [5, n + 10, n + 11]


def test_hard_negative_batches_hold_whole_categories():
    from models.training.trainer import TrainConfig, _Trainer

    n = 64
    cats = [("Top", f"c{i % 8}") for i in range(n)]
    d = PairData(np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32), np.arange(n),
                 np.ones((n, 8), np.float32), np.arange(n), [str(i) for i in range(n)], cats)
    tr = _Trainer(d, TrainConfig(batch_size=16, hard_negatives=True))
    batches = tr._batches()
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    for b in batches:                                    # 8 categories of 8 rows, batches of 16: 2 categories each
        assert len({cats[i] for i in b}) <= 3


# --------------------------------------------------------------------------- with the built models
@pytest.fixture(scope="module")
def models_copy(tmp_path_factory) -> Path:
    """The built models, linked file by file into a private folder (heads get registered there)."""
    from models.manifest import default_models_dir

    src = Path(default_models_dir())
    if not (src / "manifest.json").is_file():
        pytest.skip(f"models not built at {src} (run `cmsearch models build`)")
    dst = tmp_path_factory.mktemp("models")
    for f in src.iterdir():
        if f.is_file() and f.name != "manifest.json":
            (dst / f.name).symlink_to(f)
    if (src / ".work").is_dir():   # the downloaded weights (fine-tuning reads the torch ones)
        (dst / ".work").symlink_to(src / ".work")
    (dst / "manifest.json").write_bytes((src / "manifest.json").read_bytes())
    return dst


@pytest.fixture(scope="module")
def photo_catalog(tmp_path_factory) -> Path:
    """60 products, one generated photo each, in 6 categories."""
    d = tmp_path_factory.mktemp("catalog")
    recs = []
    for i in range(60):
        _photo(i, 120, 90).save(d / f"p{i}.png")
        recs.append({"id": f"p{i}", "title": f"product {i} colour {i % 7}", "brand": f"b{i % 3}",
                     "category": f"Group > C{i % 6}", "description": f"a thing numbered {i}",
                     "images": [f"p{i}.png"], "attributes": {"colour": f"shade {i % 7}"}})
    (d / "catalog.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n", encoding="utf-8")
    return d / "catalog.jsonl"


def test_views_are_cached_by_photo_and_seed(models_copy, tmp_path, monkeypatch):
    from models.training.features import FeatureCache

    paths = []
    for i in range(3):
        _photo(i).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    aug = AugmentConfig(views=2)
    space = Space.load(models_copy, None)
    fx = FeatureCache(space, tmp_path / "cache")
    f1, own = fx.views(paths, aug)
    assert f1.shape == (6, space.dims.image_feature) and own.tolist() == [0, 0, 1, 1, 2, 2]
    orig = fx.images(paths).features
    assert np.all(np.sum(f1[::2] * orig, axis=1) < 0.9999)         # a view is not the photo itself
    assert np.abs(f1[0] - f1[1]).max() > 1e-3                        # view seeds 0 and 1 differ

    # same key -> same features, read back from disk without encoding anything
    again = Space.load(models_copy, None)
    monkeypatch.setattr(again, "image_features", lambda px: pytest.fail("a cached view was encoded again"))
    f2, _ = FeatureCache(again, tmp_path / "cache").views(paths, aug)
    assert np.array_equal(f1, f2)
    # a fresh cache draws the same view (the view is a function of photo, seed and settings) ...
    f3, _ = FeatureCache(Space.load(models_copy, None), tmp_path / "cache2").views(paths[:1], aug)
    assert np.allclose(f1[:2], f3, atol=1e-5)
    # ... and other seeds give other views
    f4, _ = FeatureCache(Space.load(models_copy, None), tmp_path / "cache").views(paths[:1], aug, seed=7)
    assert np.abs(f4 - f1[:2]).max() > 1e-3
    # the letterbox fit has its own cache folder
    lb = FeatureCache(Space.load(models_copy, None, image_fit="letterbox"), tmp_path / "cache")
    assert lb._views.folder != fx._views.folder


def _train(catalog, models, out, log, **kw):
    from models.training.classifier import ClassifierConfig
    from models.training.int8 import Int8Gate
    from models.training.train_catalog import TrainingConfig, run
    from models.training.trainer import TrainConfig

    cfg = TrainingConfig(train=TrainConfig(epochs_max=6, patience=2, batch_size=32),
                         classifier=ClassifierConfig(epochs_max=4), augment=kw.pop("augment", AugmentConfig(views=1)),
                         int8=kw.pop("int8", None), **kw)
    if isinstance(cfg.int8, dict):
        cfg = cfg.__class__(**{**cfg.__dict__, "int8": Int8Gate(**cfg.int8)})
    return run(catalog, models, out, cfg, cache_dir=models.parent / "cache", log=log)


def test_refit_trains_every_product_after_validation_chose_the_epochs(photo_catalog, models_copy, tmp_path):
    lines = []
    man = _train(photo_catalog, models_copy, tmp_path / "heads", lines.append)
    t = man["training"]
    assert t["split"] == {"train": 45, "val": 6, "test": 9}
    assert t["refit"]["products"] == 60 and t["refit"]["pairs"] == 60           # val and test products too
    assert t["refit"]["epochs"] == t["best_epoch"]
    assert t["augment"]["views_made"] == 60                                      # every photo's view, for the refit
    assert "refit" in t["phase_seconds"]
    assert any(line.startswith("refit: training on all 60 products") for line in lines)
    assert man["image_encoder"] == {"fit": "center_crop", "variant": "fp32"}
    # the text -> image no-words floor is calibrated for these heads, above every nonsense query's best photo
    cal = man["floors_calibration"]
    assert man["floors"] == {"text_image_knn": cal["text_image_knn"]}
    assert cal["nonsense_best_max"] < cal["text_image_knn"] <= 1 and cal["nonsense_queries"] == 64
    assert any(line.startswith("no-words floor, text -> image:") for line in lines)
    from models.space import Space
    floors = Space.load(models_copy, tmp_path / "heads").floors
    assert floors["text_image_knn"] == cal["text_image_knn"] and floors["text_knn"] == 0.935
    off = _train(photo_catalog, models_copy, tmp_path / "heads-norefit", lambda s: None, refit=False)
    assert off["training"]["refit"] is None
    assert off["files"]["image_head.onnx"] != man["files"]["image_head.onnx"]


def test_int8_gate_refuses_a_calibration_that_misses_the_bar(photo_catalog, models_copy, tmp_path):
    lines = []
    out = tmp_path / "heads"
    out.mkdir()
    (out / "image.int8.onnx").write_bytes(b"stale int8 of an earlier run")
    man = _train(photo_catalog, models_copy, out, lines.append,
                 int8={"min_cosine": 1.01, "calibration_photos": 8, "held_out_photos": 10, "pool_photos": 30})
    tower = man["image_encoder"]
    assert tower["variant"] == "fp32" and "file" not in tower
    assert tower["int8"]["used"] is False and "fp32 tower is kept" in tower["int8"]["reason"]
    assert tower["int8"]["parity"]["n"] == 10 and tower["int8"]["bar"]["min_cosine"] == 1.01
    assert not (out / "image.int8.onnx").exists() and "image.int8.onnx" not in man["files"]
    assert any("int8: calibrating on 8 catalog photos" in line for line in lines)
    assert any("refused, fp32 kept" in line for line in lines)
    space = Space.load(models_copy, out)
    assert space.image_variant == "fp32" and space.identity.image_model.endswith(":fp32")


def test_int8_that_passes_is_the_tower_of_products_and_queries_and_its_identity(photo_catalog, models_copy, tmp_path):
    out = tmp_path / "heads"
    man = _train(photo_catalog, models_copy, out, lambda s: None, image_fit="letterbox",
                 int8={"min_cosine": -1.0, "min_top1": 0.0, "calibration_photos": 8, "held_out_photos": 10,
                       "pool_photos": 30})
    tower = man["image_encoder"]
    assert tower["variant"] == "int8-catalog" and tower["fit"] == "letterbox" and tower["int8"]["used"]
    assert man["files"]["image.int8.onnx"] == tower["sha256"]
    space = Space.load(models_copy, out)
    fp32 = Space.load(models_copy, None)
    assert space.image_fit == "letterbox" and space.preprocess_spec["fit"] == "letterbox"
    assert space.identity.image_model == "mobilenet_v2:int8-catalog+letterbox" or \
        space.identity.image_model.endswith(":int8-catalog+letterbox")
    assert space.identity.image_sha256 == tower["sha256"] != fp32.identity.image_sha256
    img = _photo(99)
    q = space.embed_query(images=[img])
    assert space._part("image").path == out / "image.int8.onnx"                  # the query ran the int8 file
    prod = space.embed_products(["t"], [[space.preprocess(space.decode(img))]])
    assert np.allclose(prod.features[0][0], q.image_feature, atol=1e-5)          # products: the same tower and fit
    with pytest.raises(SpaceError, match="letterbox"):
        Space.load(models_copy, out, image_fit="center_crop")


def test_tuned_top_blocks_are_the_tower_of_products_and_queries_and_its_identity(photo_catalog, models_copy,
                                                                                 tmp_path):
    """--tune-blocks: the tuned tower is written with the heads, named in their manifest and the
    space's identity, and runs for products and queries alike; a plain run removes a stale one."""
    from models.training.finetune import TUNED_FILE, TuneConfig

    out = tmp_path / "heads"
    lines = []
    man = _train(photo_catalog, models_copy, out, lines.append, augment=AugmentConfig(views=0),
                 tune=TuneConfig(blocks_from=17, epochs_max=3))
    tower = man["image_encoder"]
    assert tower["variant"] == "tuned-catalog" and tower["file"] == TUNED_FILE
    assert man["files"][TUNED_FILE] == tower["sha256"] and (out / TUNED_FILE).is_file()
    assert tower["tune"]["blocks_from"] == 17 and tower["tune"]["parity"]["cosine_min"] >= 0.9999
    assert man["training"]["refit"] is None and "fine-tuning" in man["training"]["phase_seconds"]
    assert any(line.startswith("fine-tuning blocks 17-18") for line in lines)
    space, plain = Space.load(models_copy, out), Space.load(models_copy, None)
    assert space.identity.image_model.endswith(":tuned-catalog")
    assert space.identity.image_sha256 == tower["sha256"] != plain.identity.image_sha256
    img = _photo(98)
    q = space.embed_query(images=[img])
    assert space._part("image").path == out / TUNED_FILE                         # the query ran the tuned file
    prod = space.embed_products(["t"], [[space.preprocess(space.decode(img))]])
    assert np.allclose(prod.features[0][0], q.image_feature, atol=1e-5)          # products: the same tower
    assert float(q.image_feature @ plain.embed_query(images=[img]).image_feature) < 0.9999   # it was tuned
    again = _train(photo_catalog, models_copy, out, lambda s: None)
    assert again["image_encoder"]["variant"] == "fp32" and not (out / TUNED_FILE).exists()


def test_tuning_refuses_augmented_views(photo_catalog, models_copy, tmp_path):
    from models.training.finetune import TuneConfig, TuneError

    with pytest.raises(TuneError, match="augment-views"):
        _train(photo_catalog, models_copy, tmp_path / "h", lambda s: None, tune=TuneConfig(blocks_from=17))
    from click.testing import CliRunner

    from cmsearch.cli import cli

    r = CliRunner().invoke(cli, ["train", str(photo_catalog), "--models", str(models_copy), "--out",
                                 str(tmp_path / "h2"), "--cache", str(tmp_path / "cache"), "--tune-blocks", "17",
                                 "--augment-views", "1", "--no-int8"])
    assert r.exit_code == 1 and "--tune-blocks does not go with --augment-views" in r.output, r.output
    assert "Traceback" not in r.output


def test_train_prints_progress_of_every_phase_without_a_terminal(photo_catalog, models_copy, tmp_path):
    env = {**os.environ, "CMSEARCH_FEATURE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "cmsearch.cli", "train", str(photo_catalog), "--models", str(models_copy),
         "--out", str(tmp_path / "heads"), "--epochs-max", "4", "--patience", "2", "--augment-views", "1",
         "--no-int8", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, env=env)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    for phase in ("encoding images (0 cached): 60 images", "encoding images (0 cached) done: 60/60",
                  "encoding passage texts", "encoding augmented views (0 cached): 60 views",
                  "training heads on 45 products", "heads: best epoch", "refit: training on all 60 products",
                  "refit: done", "phases: images"):
        assert phase in out, f"no {phase!r} line in:\n{out}"
    assert "epoch=1 " in out            # --quiet still shows that epochs advance (at most one line per 10 s)
