"""Ingest against the real local OpenSearch node: a catalog broken on purpose, reloads, resume, retries.

The encoders here are small deterministic stand-ins (:class:`HashEncoders`) so these tests run
on any machine in seconds and count exactly how often the "models" are called; OpenSearch is
the real node.  ``test_ingest_models.py`` runs the same pipeline with the real ONNX models.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mappings
from engine.client import ConnectionSettings
from mappings import VectorDims
from mappings import fields as F
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.ingestor import IngestInterrupted, IngestOptions, Ingestor
from plugin_ingest.rejects import read_rejects

pytestmark = pytest.mark.engine


# ---------------------------------------------------------------- stand-in encoders
def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / max(float(np.linalg.norm(x)), 1e-12)


class HashEncoders:
    """Shaped like :class:`models.space.Space` as ingest uses it; vectors from hashes and pixels.

    ``heads=True`` also yields image vectors in the shared space and a predicted category
    (by dominant colour), so the heads code path of the pipeline is exercised.
    """

    def __init__(self, heads: bool = False) -> None:
        from models.identity import SpaceIdentity

        self.heads = heads
        self.dims = VectorDims(shared=8, image_feature=16)
        self.identity = SpaceIdentity("hash-text", "0" * 64, "hash-image", "1" * 64, "hashheads" if heads else None,
                                      8, 16, "cosinesimil", "cosinesimil", 0.5, 0.5, "passage-1")
        self.passages: list[str] = []
        self.images = 0
        self.batch_images: list[int] = []          # images per embed_products call
        self.lock = threading.Lock()

    def describe(self) -> str:
        return "hash encoders"

    def preprocess(self, img):
        small = np.asarray(img.resize((4, 4)), dtype=np.float32)   # [4, 4, 3]
        return np.concatenate([small.mean(axis=(0, 1)), small.reshape(-1, 3).mean(axis=1)[:13]]) + 1.0

    def embed_products(self, passages, pixels):
        from models.space import ProductVectors, fuse

        n_img = sum(len(p) for p in pixels)
        with self.lock:
            self.passages.extend(passages)
            self.images += n_img
            self.batch_images.append(n_img)
        text = np.stack([_unit(np.frombuffer(hashlib.sha256(p.encode()).digest()[:8], np.uint8).astype(np.float32)
                               + 1) for p in passages]) if passages else np.zeros((0, 8), np.float32)
        feats = [np.stack([_unit(p) for p in ps]) if ps else np.zeros((0, 16), np.float32) for ps in pixels]
        vecs = [np.stack([_unit(f[:8]) for f in fs]) if len(fs) else np.zeros((0, 8), np.float32)
                for fs in feats] if self.heads else None
        cats = [("颜色 > " + ("红" if ps[0][0] > ps[0][1] + 20 else "其他"), 0.9) if self.heads and ps else None
                for ps in pixels]
        fused = np.stack([fuse(_unit(np.mean(v, axis=0))[None], t[None], 0.5, 0.5)[0] if vecs and len(v) else _unit(t)
                          for t, v in zip(text, vecs or [[]] * len(text))]) if len(text) else text
        return ProductVectors(text=text, fused=fused, features=feats, image_vectors=vecs, categories=cats)

    def category_label(self, path):
        return F.SEP.join(p.strip() for p in path.split(">"))


# ---------------------------------------------------------------- fixtures
def _jpeg(path: Path, color=(200, 30, 30), size=64) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(sum(color))
    arr = (np.full((size, size, 3), color) + rng.integers(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _png_bytes(color=(20, 200, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "PNG")
    return buf.getvalue()


class _ImageHandler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/ok.png":
            body = _png_bytes((30, 30, 220))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/slow.jpg":
            time.sleep(3)
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def image_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _create_index(client, name, dims=VectorDims(shared=8, image_feature=16), nested_limit=None, heads=False):
    from models.identity import META_KEY

    body = mappings.product_index_body(dims, meta={META_KEY: HashEncoders(heads=heads).identity.to_meta()})
    if nested_limit is not None:
        body["settings"]["index"]["mapping"] = {"nested_objects": {"limit": nested_limit}}
    client.indices.create(index=name, body=body)


def _count(client, name):
    client.indices.refresh(index=name)
    return client.count(index=name)["count"]


def _options(tmp_path, index, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("rejects_path", tmp_path / f"{index}.rejects.jsonl")
    kw.setdefault("checkpoint_path", tmp_path / f"{index}.ckpt.json")
    kw.setdefault("fetch_policy", FetchPolicy(allow_private_urls=True))  # the image servers are on loopback
    return IngestOptions(index=index, **kw)


def _load(path, client, tmp_path, index, encoders=None, **kw):
    enc = encoders or HashEncoders()
    report = Ingestor(path, _options(tmp_path, index, **kw), client=client, encoders=enc).run()
    return report, enc


@pytest.fixture
def broken_catalog(tmp_path, image_server):
    """Every kind of problem the issue lists, one record each, plus good records around them."""
    img = tmp_path / "img"
    img.mkdir()
    _jpeg(img / "ok.jpg")
    (img / "png_named.jpg").write_bytes(_png_bytes())
    full = _jpeg(img / "full.jpg", (10, 120, 200), size=256)
    (img / "truncated.jpg").write_bytes(full[: len(full) * 6 // 10])
    # a 20+ MB image: noise does not compress, so the PNG stays over the 20 MiB cap
    noise = np.random.default_rng(0).integers(0, 256, (2700, 2700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(img / "big.png", compress_level=0)
    assert (img / "big.png").stat().st_size > 20 * 1024 * 1024
    data_uri = "data:image/png;base64," + base64.b64encode(_png_bytes((250, 250, 0))).decode()

    def rec(**kw):
        return json.dumps(kw, ensure_ascii=False).encode("utf-8")

    lines = [
        rec(id="ok-1", title="红色 椅子", brand="IKEA", category="家居 > 家具 > 椅子", price=199,
            images=["img/ok.jpg"], colour="red"),                                        # 1 indexed
        rec(id="png-as-jpg", title="Green lamp", images=["img/png_named.jpg"]),           # 2 indexed
        rec(id="data-uri", title="Yellow cup", images=[data_uri]),                         # 3 indexed
        rec(id="http-ok", title="Blue rug", images=[f"{image_server}/ok.png"]),            # 4 indexed
        b'{"id": "broken", "title": "no closing brace"',                                   # 5 malformed JSON
        rec(title="no id here"),                                                           # 6 missing id
        rec(id="no-title", description="a description but no title"),                    # 7 missing title
        rec(id="bad-price", title="Price is text", price="abc", rating=[5]),               # 8 wrong types
        rec(id="long-title", title="长" * 100_000),                                        # 9 100k title
        b'{"id": "bad-utf8", "title": "caf\xe9 \xff"}',                                    # 10 invalid UTF-8
        rec(id="truncated-jpeg", title="Truncated", images=["img/truncated.jpg"]),        # 11 image
        rec(id="missing-image", title="Missing", images=["img/nope.jpg"]),                 # 12 image
        rec(id="slow-url", title="Slow", images=[f"{image_server}/slow.jpg"]),             # 13 image timeout
        rec(id="huge-image", title="Huge", images=["img/big.png"]),                        # 14 image > cap
        rec(id="three-images", title="Refused", images=["img/ok.jpg", "img/png_named.jpg", data_uri]),  # 15 refused
        rec(id="ok-1", title="Same id again"),                                             # 16 duplicate
        b"",                                                                               # 17 blank: no record
        rec(id="no-images", title="Text only product", description="No photo at all"),    # 18 indexed
    ]
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n" + b'{"id": "cut-off", "title": "trunc')  # 19
    return path


EXPECTED_REASONS = {
    5: ("read", "malformed JSON"),
    6: ("validate", "id: missing"),
    7: ("validate", "title: missing"),
    8: ("validate", "price: expected a number"),
    9: ("validate", "100000 characters, over the limit"),
    10: ("read", "invalid UTF-8"),
    11: ("image", "truncated"),
    12: ("image", "not found"),
    13: ("image", "read timed out"),
    14: ("image", "over the 20.0 MiB cap"),
    15: ("index", "nested"),
    16: ("validate", "duplicate id 'ok-1': already on line 1"),
    19: ("read", "malformed JSON"),
}


# ---------------------------------------------------------------- the broken catalog
def test_broken_catalog_counts_and_reasons(os_client, fresh_index, tmp_path, broken_catalog):
    index = fresh_index("ingest-broken")
    _create_index(os_client, index, nested_limit=2)     # an admin's limit: 3 images are refused by OpenSearch
    report, enc = _load(broken_catalog, os_client, tmp_path, index, image_errors="reject", read_timeout=0.5)
    c = report.counts
    assert (c.read, c.indexed, c.rejected, c.unchanged) == (18, 5, 13, 0)
    assert c.balanced()
    assert dict(c.rejected_by) == {"malformed JSON": 2, "missing id or title": 2, "invalid value (type or limit)": 2,
                                   "invalid UTF-8": 1, "image unreadable or missing": 4, "refused by OpenSearch": 1,
                                   "duplicate id": 1}
    entries = read_rejects(tmp_path / f"{index}.rejects.jsonl")
    assert all(e["rejected"] for e in entries)
    by_line = {e["line"]: e for e in entries}
    assert sorted(by_line) == sorted(EXPECTED_REASONS)
    for line, (stage, text) in EXPECTED_REASONS.items():
        assert by_line[line]["stage"] == stage, by_line[line]
        assert text in by_line[line]["reason"], by_line[line]
    assert by_line[10]["raw"].startswith('{"id": "bad-utf8"') and "\\xe9" in by_line[10]["raw"]
    assert by_line[8]["record"]["price"] == "abc"          # the record itself, to fix and reload
    assert "\\x" not in json.dumps(by_line[9])              # the 100k title is kept whole
    assert len(by_line[9]["record"]["title"]) == 100_000

    assert _count(os_client, index) == 5
    doc = os_client.get(index=index, id="ok-1")["_source"]
    assert doc[F.BRAND] == "ikea" and doc[F.CATEGORY_PATH] == ["家居", "家居>家具", "家居>家具>椅子"]
    assert doc[F.TITLE] == "红色 椅子" and doc[F.ATTR_TERMS] == ["colour=red"]
    assert len(doc[F.IMAGES]) == 1 and len(doc[F.IMAGES][0][F.IMAGE_FEATURE]) == 16
    assert F.IMAGE_VECTOR not in doc[F.IMAGES][0]                      # no heads: no shared image vector
    assert doc[F.FUSED_VECTOR] == doc[F.TEXT_VECTOR]
    assert os_client.get(index=index, id="png-as-jpg")["_source"][F.IMAGES]  # decoded by content
    assert F.IMAGES not in os_client.get(index=index, id="no-images")["_source"]
    # refresh was turned off during the load and is back to the mapping's own value
    settings = os_client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"
    assert not (tmp_path / f"{index}.ckpt.json").exists()   # a complete load leaves no checkpoint


def test_broken_catalog_keep_mode_indexes_without_the_bad_images(os_client, fresh_index, tmp_path,
                                                                 broken_catalog):
    index = fresh_index("ingest-keep")
    _create_index(os_client, index, heads=True)
    enc = HashEncoders(heads=True)
    report, _ = _load(broken_catalog, os_client, tmp_path, index, encoders=enc, image_errors="keep",
                      read_timeout=0.5)
    c = report.counts
    assert (c.read, c.indexed, c.rejected) == (18, 10, 8) and c.balanced()
    assert c.images_dropped == 4 and c.images == 4 + 3
    entries = read_rejects(tmp_path / f"{index}.rejects.jsonl")
    kept = [e for e in entries if not e["rejected"]]
    assert sorted(e["id"] for e in kept) == ["huge-image", "missing-image", "slow-url", "truncated-jpeg"]
    assert all(e["stage"] == "image" and "left out" in e["reason"] for e in kept)
    doc = os_client.get(index=index, id="truncated-jpeg")["_source"]
    assert F.IMAGES not in doc and doc[F.CONTENT_HASH].startswith("incomplete.")
    full = os_client.get(index=index, id="three-images")["_source"]
    assert len(full[F.IMAGES]) == 3 and len(full[F.IMAGES][0][F.IMAGE_VECTOR]) == 8
    assert full[F.PREDICTED_CATEGORY] in ("颜色>红", "颜色>其他")
    assert full[F.FUSED_VECTOR] != full[F.TEXT_VECTOR]
    # a product kept without its image is retried on the next load, the complete ones are not
    report2, enc2 = _load(broken_catalog, os_client, tmp_path, index, encoders=HashEncoders(heads=True),
                          image_errors="keep", read_timeout=0.5)
    assert report2.counts.unchanged == 6 and report2.counts.indexed == 4
    assert len(enc2.passages) == 4


def test_cli_dry_run_exit_status(tmp_path, broken_catalog):
    from cmsearch.cmd_ingest import ingest

    runner = CliRunner()
    args = [str(broken_catalog), "--index", "dry", "--dry-run", "--rejects", str(tmp_path / "dry.rejects.jsonl"),
            "--image-timeout", "0.5", "--no-progress", "--allow-private-urls"]
    res = runner.invoke(ingest, args)                  # --image-errors keep (the default)
    assert res.exit_code == 1, res.output
    assert "DRY RUN" in res.stdout and "read = indexed + rejected + unchanged  ok" in res.stdout
    assert "would be indexed" in res.stdout
    entries = read_rejects(tmp_path / "dry.rejects.jsonl")
    assert sum(e["rejected"] for e in entries) == 8 and sum(not e["rejected"] for e in entries) == 4
    res = runner.invoke(ingest, args + ["--accept-rejects", "--image-errors", "reject", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    # no OpenSearch in a dry run, so the 3-image product is not refused: 12 rejected, not 13
    assert summary["counts"]["read"] == 18 and summary["counts"]["rejected"] == 12


# ---------------------------------------------------------------- reloads
def _catalog(path: Path, products: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in products) + "\n", encoding="utf-8")
    return path


def _products(tmp_path, n=12):
    img = tmp_path / "img"
    img.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        _jpeg(img / f"p{i}.jpg", (i * 20 % 255, 100, 200 - i * 10))
        out.append({"id": f"p{i}", "title": f"雅诗兰黛 精华 {i}", "brand": "雅诗兰黛", "price": 10 + i,
                    "category": ["美妆", "护肤"], "images": [f"img/p{i}.jpg"]})
    return out


def test_reload_is_idempotent_and_skips_unchanged(os_client, fresh_index, tmp_path):
    index = fresh_index("ingest-reload")
    products = _products(tmp_path)
    path = _catalog(tmp_path / "c.jsonl", products)
    r1, e1 = _load(path, os_client, tmp_path, index, create=True, batch_size=5)
    assert r1.counts.indexed == 12 and len(e1.passages) == 12 and e1.images == 12
    assert _count(os_client, index) == 12
    title_tokens = os_client.get(index=index, id="p0")["_source"][F.TITLE]
    assert title_tokens.split()[0] == "雅诗兰黛"            # the catalog's brand is kept whole

    r2, e2 = _load(path, os_client, tmp_path, index, batch_size=5)
    assert (r2.counts.unchanged, r2.counts.indexed) == (12, 0) and e2.passages == [] and e2.images == 0
    assert _count(os_client, index) == 12

    products[3]["price"] = 99               # text-only change: no re-encoding
    products[4]["title"] = "雅诗兰黛 新品"    # the encoder sees the title: re-encode
    path = _catalog(path, products)
    before = os_client.get(index=index, id="p3")["_source"]
    r3, e3 = _load(path, os_client, tmp_path, index, batch_size=5)
    assert (r3.counts.indexed, r3.counts.updated_text_only, r3.counts.unchanged) == (2, 1, 10)
    assert len(e3.passages) == 1 and "新品" in e3.passages[0]
    after = os_client.get(index=index, id="p3")["_source"]
    assert after[F.PRICE] == 99 and after[F.TEXT_VECTOR] == before[F.TEXT_VECTOR]
    assert after[F.IMAGES] == before[F.IMAGES]
    assert _count(os_client, index) == 12

    r4, e4 = _load(path, os_client, tmp_path, index, batch_size=5, force=True)
    assert r4.counts.indexed == 12 and len(e4.passages) == 12


def test_batches_are_bounded_by_images_as_well_as_products(os_client, fresh_index, tmp_path):
    index = fresh_index("ingest-batch-images")
    products = _products(tmp_path, 12)
    for i, p in enumerate(products):                                           # 10 images each
        p["images"] = p["images"] + [f"img/p{j}.jpg" for j in range(12) if j != i][:9]
    path = _catalog(tmp_path / "c.jsonl", products)
    r, enc = _load(path, os_client, tmp_path, index, create=True, batch_size=32, batch_images=25)
    assert r.counts.indexed == 12 and r.counts.images == 120
    # a batch closes once it reaches 25 images: 3 products (30 images) per batch, not all 12
    assert enc.batch_images == [30, 30, 30, 30]


def _segments(client, index) -> int:
    return len(client.cat.segments(index=index, format="json"))


def test_force_merge_after_a_load_that_created_the_index(os_client, fresh_index, tmp_path):
    index = fresh_index("ingest-merge")
    path = _catalog(tmp_path / "c.jsonl", _products(tmp_path, 12))
    # two loads each leave a segment (the second rewrites every product): two segments
    r, _ = _load(path, os_client, tmp_path, index, create=True, force_merge=False)
    assert r.times.items["merge"] == 0
    _load(path, os_client, tmp_path, index, force=True, force_merge=False)
    assert _segments(os_client, index) > 1
    r, _ = _load(path, os_client, tmp_path, index, force_merge=True)     # asked for: merged
    assert r.times.items["merge"] == 1 and _segments(os_client, index) == 1
    assert _count(os_client, index) == 12

    index2 = fresh_index("ingest-merge-auto")
    r, _ = _load(path, os_client, tmp_path, index2, create=True)            # created here: merged
    assert r.times.items["merge"] == 1 and _segments(os_client, index2) == 1
    r, _ = _load(path, os_client, tmp_path, index2, force=True)             # existing index: left alone
    assert r.times.items["merge"] == 0 and _segments(os_client, index2) > 1


def test_delete_missing(os_client, fresh_index, tmp_path):
    index = fresh_index("ingest-delete")
    products = _products(tmp_path, 8)
    path = _catalog(tmp_path / "c.jsonl", products)
    _load(path, os_client, tmp_path, index, create=True)
    path = _catalog(path, products[:5])
    r, _ = _load(path, os_client, tmp_path, index)
    assert r.counts.deleted == 0 and _count(os_client, index) == 8       # not asked: nothing deleted
    r, _ = _load(path, os_client, tmp_path, index, delete_missing=True)
    assert r.counts.deleted == 3 and r.counts.unchanged == 5
    assert _count(os_client, index) == 5
    # a catalog with an unreadable line could hide an id: deleting would be a guess, so it is skipped
    _catalog(tmp_path / "c2.jsonl", products[:2])
    (tmp_path / "c2.jsonl").write_text((tmp_path / "c2.jsonl").read_text() + "{not json\n")
    r, _ = _load(tmp_path / "c2.jsonl", os_client, tmp_path, index, delete_missing=True)
    assert r.counts.deleted == 0 and any("--delete-missing skipped" in n for n in r.notes)
    assert _count(os_client, index) == 5


# ---------------------------------------------------------------- resume
def test_resume_after_a_crash_continues_without_duplicates(os_client, fresh_index, tmp_path):
    """Crash after the 3rd checkpoint, then rewind the checkpoint file to the 2nd one, as if the
    process had died (kill -9) after writing batch 3 but before recording it: the resumed load
    must neither duplicate documents nor rejects, nor re-encode what batch 3 already wrote."""
    index = fresh_index("ingest-resume")
    products = _products(tmp_path, 30)
    lines = [json.dumps(p, ensure_ascii=False) for p in products]
    lines.insert(9, "{broken in batch 3")          # line 10
    lines.insert(25, '{"id": "late-bad"}')          # line 26: no title
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ckpt = tmp_path / f"{index}.ckpt.json"

    saves: list[dict] = []

    def crash(cp):
        saves.append(asdict(cp))
        if len(saves) == 3:
            raise RuntimeError("simulated crash")

    opts = _options(tmp_path, index, create=True, batch_size=4, bulk_docs=4)
    with pytest.raises(IngestInterrupted, match="Run the same command again"):
        Ingestor(path, opts, client=os_client, encoders=HashEncoders(), on_checkpoint=crash).run()
    assert [s["line"] for s in saves] == [4, 8, 13]
    assert json.loads(ckpt.read_text())["line"] == 13
    assert _count(os_client, index) == 12
    assert [e["line"] for e in read_rejects(tmp_path / f"{index}.rejects.jsonl")] == [10]
    # rewind: the crash "happened" before checkpoint 3 was saved; and refresh was never restored
    ckpt.write_text(json.dumps(saves[1]))
    os_client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})

    enc = HashEncoders()
    report = Ingestor(path, _options(tmp_path, index, batch_size=4, bulk_docs=4), client=os_client,
                      encoders=enc).run()
    c = report.counts
    assert report.resumed_from_line == 8
    assert (c.read, c.indexed, c.unchanged, c.rejected) == (32, 26, 4, 2) and c.balanced()
    assert len(enc.passages) == 18                        # batch 3 was already written: not encoded again
    assert _count(os_client, index) == 30
    rejects = read_rejects(tmp_path / f"{index}.rejects.jsonl")
    assert [e["line"] for e in rejects] == [10, 26]       # each once, across both runs
    settings = os_client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"
    assert not ckpt.exists()


# ---------------------------------------------------------------- retries through a faulty proxy
class _FaultyProxy:
    """Forwards every request to the real node, answering some ``_bulk`` requests with an error first."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.split("://", 1)[1]
        self.bulk_faults: list[int] = []      # statuses to answer the next bulk requests with
        self.down = False                     # answer every bulk request with 503
        self.bulk_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "_bulk" in self.path:
                    proxy.bulk_requests += 1
                    status = 503 if proxy.down else (proxy.bulk_faults.pop(0) if proxy.bulk_faults else None)
                    if status:
                        msg = json.dumps({"error": {"type": "injected", "reason": f"injected {status}"},
                                          "status": status}).encode()
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(msg)))
                        self.end_headers()
                        self.wfile.write(msg)
                        return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def proxy(local_engine):
    p = _FaultyProxy(local_engine.url())
    yield p
    p.server.shutdown()


def test_bulk_retries_429_and_5xx_with_backoff(proxy, fresh_index, tmp_path, os_client):
    index = fresh_index("ingest-retry")
    client = ConnectionSettings.resolve(proxy.url).client()
    # the client's transport retries a 503 three times by itself; five 503s reach our backoff
    proxy.bulk_faults = [503] * 5 + [429]
    path = _catalog(tmp_path / "c.jsonl", _products(tmp_path, 6))
    report, _ = _load(path, client, tmp_path, index, create=True, initial_backoff=0.01, max_backoff=0.05)
    assert report.counts.indexed == 6 and report.counts.rejected == 0
    assert report.bulk_retries >= 1 and proxy.bulk_requests >= 7
    assert _count(os_client, index) == 6


def test_cluster_down_stops_the_load_and_the_rerun_finishes(proxy, fresh_index, tmp_path, os_client):
    index = fresh_index("ingest-down")
    client = ConnectionSettings.resolve(proxy.url).client()
    path = _catalog(tmp_path / "c.jsonl", _products(tmp_path, 10))
    proxy.down = True
    with pytest.raises(IngestInterrupted, match="could not be written after 2 retries"):
        _load(path, client, tmp_path, index, create=True, max_retries=2, initial_backoff=0.01, max_backoff=0.02,
              bulk_docs=4, batch_size=4)
    assert not read_rejects(tmp_path / f"{index}.rejects.jsonl")   # the documents were fine: not rejected
    proxy.down = False
    report, _ = _load(path, client, tmp_path, index, bulk_docs=4, batch_size=4)
    assert report.counts.indexed == 10 and report.counts.rejected == 0
    assert _count(os_client, index) == 10


# ---------------------------------------------------------------- OCR
def test_ocr_text_from_product_photo(os_client, fresh_index, tmp_path):
    from PIL import ImageDraw, ImageFont

    from models.ocr import OcrReader

    index = fresh_index("ingest-ocr")
    img = Image.new("RGB", (400, 160), "white")
    ImageDraw.Draw(img).text((20, 40), "OATLY 2024", fill="black", font=ImageFont.load_default(size=56))
    img.save(tmp_path / "pack.png")
    path = _catalog(tmp_path / "c.jsonl", [{"id": "oat", "title": "Oat drink", "images": ["pack.png"]}])
    report = Ingestor(path, _options(tmp_path, index, create=True, ocr=True), client=os_client,
                      encoders=HashEncoders(), ocr_reader=OcrReader()).run()
    assert report.counts.indexed == 1
    assert "oatly" in os_client.get(index=index, id="oat")["_source"][F.OCR_TEXT].split()
    assert report.times.items["ocr"] == 1 and report.times.seconds["ocr"] > 0
    assert "ocr" in report.table()          # its cost per image is in the summary


# ---------------------------------------------------------------- a real Ctrl-C
_CHILD = r"""
import signal, sys
# Ctrl-C semantics even when started from a background job, where SIGINT is ignored at startup
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from pathlib import Path
from engine.client import ConnectionSettings
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.ingestor import IngestInterrupted, IngestOptions, Ingestor
from test_ingest_e2e import HashEncoders
catalog, index, url, work = sys.argv[2:6]
opts = IngestOptions(index=index, create=True, batch_size=2, bulk_docs=2, progress=False,
                     fetch_policy=FetchPolicy(allow_private_urls=True),
                     checkpoint_path=Path(work) / "ckpt.json", rejects_path=Path(work) / "rejects.jsonl")
try:
    r = Ingestor(catalog, opts, client=ConnectionSettings.resolve(url).client(), encoders=HashEncoders()).run()
    print("DONE", r.counts.read, r.counts.indexed, r.counts.unchanged, r.resumed_from_line)
except IngestInterrupted as exc:
    print("INTERRUPTED", exc)
    sys.exit(130)
"""


class _SlowImages(BaseHTTPRequestHandler):
    """Images served slowly; image ``hold_from`` and later wait for ``release``, so a load cannot
    finish before the test has interrupted it, however busy the machine (see :func:`held_images`)."""

    hold_from: int | None = None
    release: threading.Event | None = None

    def log_message(self, *a):
        pass

    def do_GET(self):
        time.sleep(0.15)
        if self.hold_from is not None and int(self.path.strip("/").split(".")[0]) >= self.hold_from:
            self.release.wait(120)
        body = _png_bytes((int(self.path.strip("/").split(".")[0]) % 255, 10, 10))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def held_images(hold_from: int) -> tuple[type, threading.Event]:
    """A slow image handler whose images from ``hold_from`` on wait for the returned event."""
    release = threading.Event()
    return type("HeldImages", (_SlowImages,), {"hold_from": hold_from, "release": release}), release


def test_ctrl_c_keeps_a_checkpoint_and_the_rerun_finishes(local_engine, os_client, fresh_index, tmp_path):
    import signal
    import subprocess
    import sys

    handler, release = held_images(20)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        path = _catalog(tmp_path / "c.jsonl", [{"id": f"s{i}", "title": f"slow {i}", "images": [f"{base}/{i}.png"]}
                                               for i in range(60)])
        index = fresh_index("ingest-sigint")
        repo = str(Path(__file__).resolve().parents[1])
        cmd = [sys.executable, "-c", _CHILD, repo, str(path), index, local_engine.url(), str(tmp_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ckpt = tmp_path / "ckpt.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and json.loads(ckpt.read_text() or "{}").get("line", 0) >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        release.set()                               # the images in flight may finish now
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, out + err
        assert "INTERRUPTED load interrupted" in out and "Run the same command again" in out
        stopped_at = json.loads(ckpt.read_text())["line"]
        assert 6 <= stopped_at < 60
        settings = os_client.indices.get_settings(index=index)[index]["settings"]["index"]
        assert settings["refresh_interval"] == "1s"                 # restored on the way out

        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
        read, indexed, unchanged, resumed = map(int, out.split("DONE")[1].split())
        assert resumed == stopped_at and read == 60 and indexed + unchanged == 60
        assert _count(os_client, index) == 60 and not ckpt.exists()
    finally:
        srv.shutdown()
