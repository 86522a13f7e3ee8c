"""`cmsearch models export-clip`: a Hugging Face CLIP / Chinese-CLIP folder -> our ONNX interface.

No weights can be downloaded here, so each test saves a tiny randomly initialised model (and
a tiny tokenizer and preprocessor config) to a temp folder, exports it, and compares the
ONNX towers with torch on fresh inputs, through the same run-time encoders the product uses.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from cmsearch.cmd_models import models as models_cli  # noqa: E402
from mappings import VectorDims  # noqa: E402
from models.export.clip import ClipExportError, export_clip  # noqa: E402
from models.image_encoder import ImageEncoder  # noqa: E402
from models.manifest import load_manifest  # noqa: E402
from models.text_encoder import TextEncoder  # noqa: E402

TOL = 1e-4
_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def _clip_folder(d: Path) -> Path:
    """A tiny CLIPModel with a 70-token BPE vocabulary."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(letters)})
    merges = ["t h", "th e</w>", "a p", "ap p", "l e</w>", "c a", "ca t</w>"]
    for m in merges:
        vocab["".join(m.split())] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=77)
    cfg = CLIPConfig(
        text_config=dict(_TINY, vocab_size=len(vocab), max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(_TINY, image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


def _chinese_clip_folder(d: Path) -> Path:
    """A tiny ChineseCLIPModel (BERT text tower) with a character vocabulary."""
    from transformers import BertTokenizer, ChineseCLIPConfig, ChineseCLIPImageProcessor, ChineseCLIPModel

    torch.manual_seed(1)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("苹果香蕉牛奶酸的是一个红色连衣裙猫") + list("abcdefgh")
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(d / "vocab.txt"), model_max_length=52)
    cfg = ChineseCLIPConfig(
        text_config=dict(_TINY, vocab_size=len(vocab), max_position_embeddings=64),
        vision_config=dict(_TINY, image_size=32, patch_size=8), projection_dim=24)
    ChineseCLIPModel(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    ChineseCLIPImageProcessor(size={"height": 32, "width": 32},
                              crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module", params=["clip", "chinese_clip"])
def exported(request, tmp_path_factory):
    src = tmp_path_factory.mktemp(f"hf-{request.param}")
    (_clip_folder if request.param == "clip" else _chinese_clip_folder)(src)
    out = tmp_path_factory.mktemp(f"onnx-{request.param}")
    manifest = export_clip(src, out, progress=lambda _m: None)
    return request.param, src, out, manifest


def _torch_model(src: Path):
    from models.export.clip import load_clip
    return load_clip(src)[0]


def test_export_check_recorded_within_tolerance(exported):
    kind, _src, out, manifest = exported
    check = manifest["export_check"]
    print(f"\n{kind}: export check {check}")
    assert check["text_max_abs_diff"] <= TOL and check["image_max_abs_diff"] <= TOL
    assert load_manifest(out)["kind"] == "clip"


def test_text_tower_matches_torch_through_text_encoder(exported):
    kind, src, out, manifest = exported
    from transformers import AutoTokenizer

    texts = ["the apple", "a cat", "苹果牛奶", "红色连衣裙 cat", "the the the apple cat cat"]
    enc = TextEncoder(out, manifest["text"], threads=1)
    got = enc.encode(texts, kind="query")
    tok = AutoTokenizer.from_pretrained(src)
    batch = tok(texts, padding=True, return_tensors="pt")
    assert enc.token_ids(texts) == [tok(t)["input_ids"] for t in texts]
    with torch.no_grad():
        out_t = _torch_model(src).get_text_features(**batch)
    ref = (out_t if hasattr(out_t, "shape") else out_t.pooler_output).numpy()
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    diff = float(np.abs(got - ref).max())
    print(f"\n{kind}: text tower ONNX vs torch max |diff| {diff:.2e} (unit vectors)")
    assert got.shape == (len(texts), manifest["spaces"]["shared"]["dim"])
    assert diff <= TOL


def test_image_tower_matches_torch_through_image_encoder(exported):
    kind, src, out, manifest = exported
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 50), (64, 32), (32, 32))]
    enc = ImageEncoder(out, manifest["image"], threads=1)
    pixels = np.stack([enc.preprocess(im) for im in imgs])
    assert pixels.shape[1:] == (3, 32, 32)
    emb = enc.encode(imgs, output="embedding", normalize=False)
    feat = enc.encode(imgs, output="feature", normalize=False)
    model = _torch_model(src)
    with torch.no_grad():
        px = torch.from_numpy(pixels)
        pooled = model.vision_model(pixel_values=px).pooler_output
        out_t = model.get_image_features(pixel_values=px)
    ref = (out_t if hasattr(out_t, "shape") else out_t.pooler_output).numpy()
    d_emb, d_feat = float(np.abs(emb - ref).max()), float(np.abs(feat - pooled.numpy()).max())
    print(f"\n{kind}: image tower ONNX vs torch max |diff| embedding {d_emb:.2e}, feature {d_feat:.2e}")
    assert emb.shape == (3, manifest["spaces"]["shared"]["dim"])
    assert feat.shape == (3, manifest["spaces"]["image_feature"]["dim"])
    assert d_emb <= TOL and d_feat <= TOL


def test_projection_heads_give_the_towers_own_embedding(exported):
    """Ingest and queries reach CLIP's shared space through heads: feature -> visual_projection."""
    kind, _src, out, manifest = exported
    from PIL import Image

    from models.heads import Heads
    from models.space import Space

    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)) for _ in range(3)]
    enc = ImageEncoder(out, manifest["image"], threads=1)
    heads = Heads.load(out / "heads")
    via_heads = heads.project_image(enc.encode(imgs, output="feature"))
    direct = enc.encode(imgs, output="embedding")
    diff = float(np.abs(via_heads - direct).max())
    print(f"\n{kind}: feature -> projection head vs image_embeds max |diff| {diff:.2e}")
    assert diff <= TOL and heads.text_head_is_identity and heads.dim == manifest["spaces"]["shared"]["dim"]
    space = Space.load(out, out / "heads", strict=False)
    q = space.embed_query(images=[imgs[0]])
    assert space.problems == [] and np.allclose(q.image, direct[0] / np.linalg.norm(direct[0]), atol=TOL)


def test_preprocessing_follows_the_hf_image_processor(exported):
    """Our numpy/PIL preprocessing vs the folder's own image processor (bicubic resize, crop)."""
    kind, src, out, manifest = exported
    from PIL import Image
    from transformers import AutoImageProcessor

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).resize((140, 180))
    ours = ImageEncoder(out, manifest["image"]).preprocess(img)
    try:
        hf = AutoImageProcessor.from_pretrained(src, use_fast=False)(img, return_tensors="np")["pixel_values"][0]
    except (ImportError, ValueError, TypeError) as exc:
        pytest.skip(f"this transformers has no PIL image processor for {kind}: {exc}")
    diff = float(np.abs(ours - hf).max())
    print(f"\n{kind}: preprocessing vs HF image processor max |diff| {diff:.3f}")
    assert ours.shape == hf.shape
    assert diff < 0.05  # same resampling; HF rounds to uint8 between steps in places


def test_manifest_gives_index_dims(exported):
    _kind, _src, out, manifest = exported
    dims = VectorDims.from_manifest(load_manifest(out))
    assert dims.shared == manifest["text"]["dim"] == manifest["image"]["output_dims"]["embedding"]
    assert dims.image_feature == 32


def test_not_a_clip_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ClipExportError, match="config.json"):
        export_clip(tmp_path, tmp_path / "out", progress=lambda _m: None)
    from transformers import BertConfig, BertModel
    BertModel(BertConfig(**_TINY, vocab_size=20)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ClipExportError, match="'bert'"):
        export_clip(tmp_path / "bert", tmp_path / "out", progress=lambda _m: None)


def test_cli_export_clip(tmp_path):
    (tmp_path / "src").mkdir()
    src = _clip_folder(tmp_path / "src")
    res = CliRunner().invoke(models_cli, ["export-clip", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "clip_text.onnx" in res.output or "wrote" in res.output
    assert load_manifest(tmp_path / "out")["kind"] == "clip"
    res = CliRunner().invoke(models_cli, ["info", "--dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "clip" in res.output and "16" in res.output
