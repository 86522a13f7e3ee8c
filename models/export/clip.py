"""Export a local Hugging Face CLIP / Chinese-CLIP folder to the project's ONNX interface.

The default model set pairs two backbones that never saw each other (MobileNetV2, e5) and
needs trained heads to share a space. A user who has real CLIP weights (``CLIPModel``) or
Chinese-CLIP weights (``ChineseCLIPModel``) on disk gets a natively cross-modal set instead:

- ``clip_text.onnx``  : input_ids, attention_mask [batch, seq] -> ``text_embeds`` [batch, P]
- ``clip_image.onnx`` : pixel_values [batch, 3, S, S] -> ``image_embeds`` [batch, P] (the shared
  space) and ``pooled`` [batch, H] (the vision tower's pooled output, the "image feature")
- ``clip_tokenizer.json`` : the folder's tokenizer converted to a ``tokenizers`` file
- ``manifest.json`` with ``kind: "clip"``: shared space = the CLIP projection (dim P), the
  image feature space = the vision hidden size H, no heads needed.

The text entry carries the same keys the e5 text entry has (``onnx``, ``tokenizer``,
``prefixes`` — empty for CLIP —, ``max_tokens``, ``normalize``), so ``TextEncoder`` runs it,
and the image entry the keys ``ImageEncoder`` reads (``output="embedding"`` for the shared
space). Vectors are raw projections; the run-time encoders L2-normalise them, as the
manifest says. Every export is checked against torch on random inputs before it is written.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..manifest import new_manifest, sha256_file, write_manifest

OPSET = 17
TEXT_FILE, IMAGE_FILE, TOKENIZER_FILE = "clip_text.onnx", "clip_image.onnx", "clip_tokenizer.json"
MAX_EXPORT_DIFF = 1e-4
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
_OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
_OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


class ClipExportError(ValueError):
    """The folder is not a CLIP / Chinese-CLIP checkpoint we can export, or the export disagrees."""


def load_clip(folder: Path):
    """(model in eval mode, model_type) for a CLIPModel or ChineseCLIPModel folder."""
    from transformers import AutoConfig, ChineseCLIPModel, CLIPModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ClipExportError(f"{folder} has no config.json: not a Hugging Face model folder")
    cfg = AutoConfig.from_pretrained(folder)
    classes = {"clip": CLIPModel, "chinese_clip": ChineseCLIPModel}
    if cfg.model_type not in classes:
        raise ClipExportError(f"{folder} holds a {cfg.model_type!r} model; expected one of {sorted(classes)}")
    model = classes[cfg.model_type].from_pretrained(folder, attn_implementation="eager")
    return model.eval(), cfg.model_type


def _tensor(out):
    """get_*_features returns a tensor in transformers 4 and a ModelOutput (pooler_output) in 5."""
    return out if hasattr(out, "shape") else out.pooler_output


def text_tower(model):
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return _tensor(self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    return TextTower(model).eval()


def image_tower(model):
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            pooled = self.m.vision_model(pixel_values=pixel_values).pooler_output
            return self.m.visual_projection(pooled), pooled  # what get_image_features computes

    return ImageTower(model).eval()


def _export(module, args, path: Path, inputs, outputs, dynamic) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter on purpose (no onnxscript)
        # Shape checks traced as constants are fine: every export is compared with torch below.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic)


def _max_diff(onnx_path: Path, feeds: dict, torch_outs) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in feeds.items()})
    return max(float(np.abs(g - t.detach().numpy()).max()) for g, t in zip(got, torch_outs))


def preprocess_block(folder: Path, image_size: int) -> dict:
    """The image preprocessing from ``preprocessor_config.json`` (CLIP defaults when absent)."""
    path = Path(folder) / "preprocessor_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    size = cfg.get("size", {"shortest_edge": image_size})
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if "shortest_edge" in size:
        resize = int(size["shortest_edge"])
    else:
        resize = [int(size["height"]), int(size["width"])]
    crop = cfg.get("crop_size", image_size)
    crop = int(crop["height"]) if isinstance(crop, dict) else int(crop)
    block = {
        "resize": resize if cfg.get("do_resize", True) else None,
        "interpolation": _RESAMPLE.get(int(cfg.get("resample", 3)), "bicubic"),
        "center_crop": crop if cfg.get("do_center_crop", True) else None,
        "rescale": float(cfg.get("rescale_factor", 1 / 255)),
        "mean": [float(x) for x in cfg.get("image_mean", _OPENAI_MEAN)],
        "std": [float(x) for x in cfg.get("image_std", _OPENAI_STD)],
        "color": "RGB", "layout": "NCHW",
        "from": "preprocessor_config.json" if cfg else "CLIP defaults (no preprocessor_config.json)",
    }
    if block["center_crop"] is None and not isinstance(block["resize"], list):
        raise ClipExportError("preprocessor without a centre crop must resize to a fixed height and width")
    final = block["center_crop"] or block["resize"][0]
    if final != image_size:
        raise ClipExportError(f"preprocessing yields {final}px images, the vision tower expects {image_size}px")
    return block


def export_tokenizer(folder: Path, out: Path):
    """Save the folder's tokenizer as one ``tokenizers`` JSON; returns (HF tokenizer, max length)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ClipExportError(f"the tokenizer in {folder} has no fast (tokenizers) version to export")
    backend.save(str(out))
    return tok


def _source_block(folder: Path, model_type: str) -> dict:
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    return {"path": str(folder.resolve()), "model_type": model_type,
            "config_sha256": sha256_file(folder / "config.json"),
            "weights": [{"name": p.name, "sha256": sha256_file(p)} for p in weights]}


def export_clip(folder: str | Path, out_dir: str | Path, *,
                progress: Callable[[str], None] = print) -> dict:
    """Export ``folder`` into ``out_dir`` (ONNX towers, tokenizer, manifest); returns the manifest."""
    import torch

    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, model_type = load_clip(folder)
    tcfg, vcfg = model.config.text_config, model.config.vision_config
    proj = int(model.config.projection_dim)
    image_size = int(vcfg.image_size)
    progress(f"clip: {model_type} from {folder} (projection {proj}, vision {vcfg.hidden_size}, "
             f"text {tcfg.hidden_size}, image {image_size}px)")

    pre = preprocess_block(folder, image_size)
    tok = export_tokenizer(folder, out_dir / TOKENIZER_FILE)
    max_tokens = int(min(tok.model_max_length or 10**9, tcfg.max_position_embeddings))

    # Random inputs that include padding (ragged batch) so the mask path is exercised.
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, int(tcfg.vocab_size), (3, min(12, max_tokens)), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    enc = tok(["a photo", "x"], padding="max_length", max_length=ids.shape[1], truncation=True, return_tensors="pt")
    ids[:2], mask[:2] = enc["input_ids"], enc["attention_mask"]  # real token ids incl. specials/eos
    pixels = torch.randn(2, 3, image_size, image_size, generator=gen)

    ttower, itower = text_tower(model), image_tower(model)
    progress("clip: exporting text tower")
    _export(ttower, (ids, mask), out_dir / TEXT_FILE, ["input_ids", "attention_mask"], ["text_embeds"],
            {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
             "text_embeds": {0: "batch"}})
    progress("clip: exporting image tower")
    _export(itower, (pixels,), out_dir / IMAGE_FILE, ["pixel_values"], ["image_embeds", "pooled"],
            {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}, "pooled": {0: "batch"}})

    with torch.no_grad():
        # Check on inputs the export never saw (other batch size and sequence length).
        ids2 = torch.randint(5, int(tcfg.vocab_size), (5, min(9, max_tokens)), generator=gen)
        mask2 = torch.ones_like(ids2)
        mask2[3, 5:] = 0
        px2 = torch.randn(3, 3, image_size, image_size, generator=gen)
        text_diff = max(_max_diff(out_dir / TEXT_FILE, {"input_ids": i, "attention_mask": m}, [ttower(i, m)])
                        for i, m in ((ids, mask), (ids2, mask2)))
        image_diff = _max_diff(out_dir / IMAGE_FILE, {"pixel_values": px2}, list(itower(px2)))
    check = {"text_max_abs_diff": text_diff, "image_max_abs_diff": image_diff}
    if max(text_diff, image_diff) > MAX_EXPORT_DIFF:
        raise ClipExportError(f"ONNX export disagrees with torch by more than {MAX_EXPORT_DIFF}: {check}")

    samples = ["a photo of a cat", "红色连衣裙 red dress", "Oatly oat milk 1L"]
    hf_ids = [tok(s, truncation=True, max_length=max_tokens)["input_ids"] for s in samples]
    from tokenizers import Tokenizer
    rt = Tokenizer.from_file(str(out_dir / TOKENIZER_FILE))
    rt.no_padding()
    rt.enable_truncation(max_tokens)
    if [e.ids for e in rt.encode_batch(samples)] != hf_ids:
        raise ClipExportError("the exported tokenizer does not reproduce the folder's tokenizer")

    name = folder.resolve().name
    sha = {f: sha256_file(out_dir / f) for f in (TEXT_FILE, IMAGE_FILE, TOKENIZER_FILE)}
    source = _source_block(folder, model_type)
    text = {
        "name": f"{model_type}:{name}", "architecture": type(model).__name__ + " text tower",
        "source": source, "dim": proj,
        "onnx": TEXT_FILE, "onnx_sha256": sha[TEXT_FILE],
        "variants": {"fp32": {"file": TEXT_FILE, "sha256": sha[TEXT_FILE]}},
        "default_variant": "fp32",
        "tokenizer": TOKENIZER_FILE, "tokenizer_file": {"file": TOKENIZER_FILE, "sha256": sha[TOKENIZER_FILE]},
        "max_tokens": max_tokens, "prefixes": {"query": "", "passage": ""},
        "pooling": "model", "pooled_in_graph": True, "normalize": "l2", "space_type": "cosinesimil",
        "inputs": ["input_ids", "attention_mask"], "output": "text_embeds", "onnx_opset": OPSET,
    }
    image = {
        "name": f"{model_type}:{name}", "architecture": type(model).__name__ + " vision tower",
        "source": source, "dim": int(vcfg.hidden_size),
        "input": "pixel_values",
        "outputs": {"feature": "pooled", "embedding": "image_embeds"},
        "output_dims": {"feature": int(vcfg.hidden_size), "embedding": proj},
        "shared_output": "embedding",
        "preprocess": pre, "normalize": "l2", "space_type": "cosinesimil",
        "variants": {"fp32": {"file": IMAGE_FILE, "sha256": sha[IMAGE_FILE]}},
        "default_variant": "fp32", "onnx_opset": OPSET,
    }
    manifest = new_manifest(text, image, kind="clip", shared={
        "dim": proj, "space_type": "cosinesimil",
        "note": "CLIP joint space: the text tower and the image tower's 'embedding' output project into it"})
    manifest["export_check"] = check
    manifest["build"] = {"seconds": round(time.perf_counter() - t0, 1), "exporter": "models.export.clip"}
    write_manifest(out_dir, manifest)
    write_projection_heads(model, out_dir / "heads", pooled_dim=int(vcfg.hidden_size), proj=proj)
    progress(f"clip: wrote {out_dir} (text diff {text_diff:.1e}, image diff {image_diff:.1e})")
    return manifest



def write_projection_heads(model, heads_dir: Path, *, pooled_dim: int, proj: int) -> dict:
    """CLIP's own image projection as the set's heads, so ingest and queries need no training.

    The run-time path is the one trained heads use: the image encoder's feature (the pooled
    vision output) goes through an image head into the shared space.  For CLIP that head is the
    model's ``visual_projection`` (linear, no bias: a direction-preserving map, so it gives the
    same unit vector as the tower's ``image_embeds``), and the text head is the identity.
    """
    from models.training.export import write_heads
    from models.training.trainer import HeadParams

    w = model.visual_projection.weight.detach().cpu().numpy().astype(np.float32)  # [proj, pooled]
    image_head = HeadParams("linear", pooled_dim, proj, [(w, np.zeros(proj, dtype=np.float32))])
    return write_heads(heads_dir, image_head=image_head, text_head=HeadParams("identity", proj, proj, []),
                       image_feature_dim=pooled_dim, text_dim=proj,
                       metadata={"source": "CLIP visual_projection (no training)"})
