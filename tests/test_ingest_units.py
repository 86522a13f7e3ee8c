"""Ingest pieces that need neither a cluster nor models: reader, schema, enrich, fetch, bulk helpers."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from analysis import AliasTable, Tokenizer
from mappings import VectorDims, product_index_body
from mappings import fields as F
from plugin_ingest.bulk import error_text
from plugin_ingest.catalog import Catalog, CatalogError
from plugin_ingest.checkpoint import Checkpoint, CheckpointStore
from models.passage import passage_text
from plugin_ingest.enrich import Enricher, build_vocabulary
from plugin_ingest.fetch import FetchError, FetchPolicy, ImageFetcher
from plugin_ingest.rejects import RejectsWriter, read_rejects
from plugin_ingest.report import Counts
from plugin_ingest.schema import InvalidRecord, Limits, validate
from plugin_ingest.survey import survey


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- catalog reader
def test_jsonl_reader_reports_each_bad_line_and_keeps_going(tmp_path):
    lines = [
        "\ufeff" + json.dumps({"id": "a", "title": "A"}),  # BOM on the first line
        "",                                                # blank: not a record
        '{"id": "b", "title": ',                           # malformed
        "[1, 2]",                                          # not an object
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    data += b'{"id": "c", "title": "caf\xe9"}\n'           # latin-1 byte: invalid UTF-8
    data += json.dumps({"id": "d", "title": "D"}).encode()  # last line without newline
    cat = Catalog(_write(tmp_path / "c.jsonl", data))
    recs = list(cat.records())
    assert [r.line for r in recs] == [1, 3, 4, 5, 6]
    assert recs[0].data == {"id": "a", "title": "A"}
    assert recs[1].error.startswith("malformed JSON")
    assert "JSON object" in recs[2].error
    assert "invalid UTF-8" in recs[3].error and "\\xe9" in recs[3].raw
    assert recs[4].data["id"] == "d"


def test_jsonl_resume_from_offset_keeps_line_numbers(tmp_path):
    rows = [json.dumps({"id": str(i), "title": f"t{i}"}) for i in range(6)]
    cat = Catalog(_write(tmp_path / "c.jsonl", ("\n".join(rows) + "\n").encode()))
    recs = list(cat.records())
    again = list(cat.records(recs[2].end_offset, recs[2].end_line))
    assert [r.data["id"] for r in again] == ["3", "4", "5"]
    assert [r.line for r in again] == [4, 5, 6]


def test_overlong_record_is_one_error_not_a_memory_spike(tmp_path):
    big = json.dumps({"id": "x", "title": "y" * 5000})
    cat = Catalog(_write(tmp_path / "c.jsonl", (big + "\n" + json.dumps({"id": "z", "title": "z"}) + "\n").encode()),
                  max_record_bytes=1000)
    recs = list(cat.records())
    assert "longer than 1000 bytes" in recs[0].error
    assert recs[1].data["id"] == "z" and recs[1].line == 2


def test_csv_reader_bom_multiline_wrong_field_count_and_utf8(tmp_path):
    text = ("\ufeffid,title,price,color\n"
            "1,\"Chair\nwith a newline\",10,red\n"
            "2,Table,20\n"                      # one field short
            "\n"
            "3,Lamp,5,white\n").encode("utf-8")
    text += b"4,Sof\xff,7,blue\n"
    cat = Catalog(_write(tmp_path / "c.csv", text))
    assert cat.header() == ["id", "title", "price", "color"]
    recs = list(cat.records())
    assert [r.line for r in recs] == [2, 4, 6, 7]
    assert recs[0].data["title"] == "Chair\nwith a newline" and recs[0].end_line == 3
    assert "3 fields, the header has 4" in recs[1].error
    assert recs[2].data == {"id": "3", "title": "Lamp", "price": "5", "color": "white"}
    assert "invalid UTF-8" in recs[3].error
    # resume after the multi-line row
    again = list(cat.records(recs[0].end_offset, recs[0].end_line))
    assert [r.line for r in again] == [4, 6, 7]


def test_csv_header_problems_are_whole_file_errors(tmp_path):
    with pytest.raises(CatalogError, match="repeats"):
        list(Catalog(_write(tmp_path / "a.csv", b"id,title,id\n1,2,3\n")).records())
    with pytest.raises(CatalogError, match="format"):
        Catalog(_write(tmp_path / "a.txt", b"x"))


# ---------------------------------------------------------------- schema
def test_validate_types_and_unknown_columns():
    p = validate({"id": 42, "title": " 红色 椅子 ", "price": "12.5", "rating": 4, "category": "家居 > 家具 > 椅子",
                  "images": "a.jpg", "color": "red", "relations": {"series": "MALM", "related": ["1", "2"]}})
    assert p.id == "42" and p.title == "红色 椅子" and p.price == 12.5
    assert p.category == ("家居", "家具", "椅子")
    assert p.images == ("a.jpg",)
    assert p.attributes == {"color": "red"}
    assert p.series == ("MALM",) and p.related == ("1", "2")


def test_validate_collects_every_reason():
    with pytest.raises(InvalidRecord) as e:
        validate({"title": 5, "price": "abc", "rating": float("nan"), "images": 3, "relations": {"foo": 1}})
    reasons = " | ".join(e.value.reasons)
    for part in ("id: missing", "title: expected a string", "price: expected a number",
                 "rating: expected a finite number", "images: expected a string or a list",
                 "relations: unknown key"):
        assert part in reasons


def test_validate_limits_and_bool_is_not_a_number():
    with pytest.raises(InvalidRecord, match="100000 characters, over the limit of 1000"):
        validate({"id": "x", "title": "长" * 100_000})
    with pytest.raises(InvalidRecord, match="price: expected a number, got boolean"):
        validate({"id": "x", "title": "t", "price": True})
    with pytest.raises(InvalidRecord, match="over OpenSearch's limit"):
        validate({"id": "é" * 300, "title": "t"})
    # images past the limit are left out, the product is kept
    p = validate({"id": "x", "title": "t", "images": ["a", "b", "a", "c"]}, limits=Limits(max_images=2))
    assert p.images == ("a", "b") and p.images_left_out == ("c",)


def test_validate_csv_coercion():
    p = validate({"id": "1", "title": "T", "price": "", "images": "a.jpg|b.png", "related": "[\"x\", \"y\"]",
                  "attributes": '{"size": "L"}', "material": "oak"}, csv_mode=True)
    assert p.price is None and p.images == ("a.jpg", "b.png") and p.related == ("x", "y")
    assert p.attributes == {"size": "L", "material": "oak"}
    with pytest.raises(InvalidRecord, match="title: missing"):
        validate({"id": "1", "title": "  "}, csv_mode=True)


# ---------------------------------------------------------------- enrich
@pytest.fixture(scope="module")
def enricher():
    aliases = AliasTable.from_dict({"brands": {"sk-ii": ["sk2", "SK-II", "神仙水"], "estee lauder": ["雅诗兰黛"]}})
    vocab = build_vocabulary({"ahc", "小棕瓶"}, {"美妆>护肤>精华"}, aliases)
    return Enricher(Tokenizer(vocab.words()), aliases, vector_identity="m1")


def test_enrich_fields_use_the_shared_analysis(enricher):
    p = validate({"id": "p1", "title": "雅诗兰黛小棕瓶精华 ＡＨＣ", "brand": "SK2", "category": "美妆 > 护肤 > 精华",
                  "price": 300, "color": "Red", "accessory_of": ["SK-II", "家居 > 家具"]})
    doc = enricher.fields(p)
    assert doc[F.TITLE].split()[:2] == ["雅诗兰黛", "小棕瓶"] and "ahc" in doc[F.TITLE].split()
    assert doc[F.TITLE_RAW] == "雅诗兰黛小棕瓶精华 ＡＨＣ"
    assert doc[F.BRAND] == "sk-ii"
    assert "神仙水" in doc[F.BRAND_TEXT]
    assert doc[F.CATEGORY_PATH] == ["美妆", "美妆>护肤", "美妆>护肤>精华"]
    assert doc[F.CATEGORY_LEAF] == "美妆>护肤>精华"
    assert doc[F.category_level(0)] == "美妆" and doc[F.category_level(2)] == "精华"
    assert set(doc[F.ACCESSORY_OF]) >= {"SK-II", "sk-ii", "家居>家具"}
    assert {"color=Red", "color=red"} <= set(doc[F.ATTR_TERMS])
    mapped = product_index_body(VectorDims(shared=8, image_feature=4))["mappings"]["properties"]
    assert set(doc) <= set(mapped)       # the mapping is strict: an unknown field would be refused


def test_content_hash_halves(enricher):
    base = {"id": "p1", "title": "Chair", "description": "oak", "images": ["a.jpg"], "price": 10}
    h1 = enricher.content_hash(validate(base))
    assert enricher.content_hash(validate(dict(base))) == h1
    price = enricher.content_hash(validate({**base, "price": 11}))
    assert price.vectors == h1.vectors and price.text != h1.text      # text-only change
    title = enricher.content_hash(validate({**base, "title": "Stool"}))
    assert title.vectors != h1.vectors                                 # re-encode
    other_models = Enricher(enricher.tokenizer, enricher.aliases, vector_identity="m2")
    assert other_models.content_hash(validate(base)).vectors != h1.vectors
    assert h1.incomplete() != h1 and str(h1).count(".") == 1


def test_documents_for_an_index_without_raw_features_leave_them_out():
    import numpy as np

    from mappings import VectorOptions
    from plugin_ingest.documents import product_document

    vec = np.ones(8) / np.sqrt(8)
    kw = dict(text_vector=vec, fused_vector=vec, image_sources=["a.jpg", "b.jpg"], image_features=np.ones((2, 4)),
              image_vectors=np.ones((2, 8)), content_hash="h")
    full = product_document({"id": "p1"}, **kw)
    assert all(F.IMAGE_FEATURE in im for im in full[F.IMAGES])
    lean = product_document({"id": "p1"}, **kw, keep_features=False)
    assert [sorted(im) for im in lean[F.IMAGES]] == [sorted([F.IMAGE_URL, F.IMAGE_VECTOR])] * 2
    mapped = product_index_body(VectorDims(shared=8, image_feature=4), vectors=VectorOptions("sq", False))
    assert set(lean[F.IMAGES][0]) <= set(mapped["mappings"]["properties"][F.IMAGES]["properties"])


def test_passage_matches_training_text():
    from models.training.catalog import TrainingProduct

    p = validate({"id": "1", "title": "Chair", "brand": "IKEA", "category": ["Home", "Chairs"], "description": "Oak."})
    assert passage_text(p) == "Chair. IKEA. Home > Chairs. Oak"
    assert passage_text(p) == TrainingProduct(id="1", title="Chair", brand="IKEA", category=("Home", "Chairs"),
                                              description="Oak.").text()


# ---------------------------------------------------------------- fetch
def _png_bytes(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def test_fetch_local_data_uri_and_caps(tmp_path):
    (tmp_path / "img").mkdir()
    _write(tmp_path / "img" / "a.png", _png_bytes())
    f = ImageFetcher(tmp_path, max_bytes=1000)
    assert f.fetch("img/a.png") == _png_bytes()
    assert f.fetch(f"file://{tmp_path}/img/a.png") == _png_bytes()
    uri = "data:image/png;base64," + base64.b64encode(_png_bytes()).decode()
    assert f.fetch(uri) == _png_bytes()
    with pytest.raises(FetchError, match="not found"):
        f.fetch("img/missing.jpg")
    _write(tmp_path / "big.bin", b"x" * 2000)
    with pytest.raises(FetchError, match="over the"):
        f.fetch("big.bin")
    with pytest.raises(FetchError, match="bad base64"):
        f.fetch("data:image/png;base64,@@@@")
    with pytest.raises(FetchError, match="over the"):
        f.fetch("data:image/png;base64," + "A" * 4000)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/ok.png":
            body = _png_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/slow.png":
            time.sleep(3)
            self.send_response(200)
            self.end_headers()
        elif self.path == "/drip.png":
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/huge.png":
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def http_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fetch_http(http_server, tmp_path):
    # the test server is on loopback, which the default policy refuses
    f = ImageFetcher(tmp_path, max_bytes=1024 * 1024, read_timeout=0.5, policy=FetchPolicy(allow_private_urls=True))
    assert f.fetch(f"{http_server}/ok.png") == _png_bytes()
    assert f.fetch(f"{http_server}/moved") == _png_bytes()
    with pytest.raises(FetchError, match="HTTP 404"):
        f.fetch(f"{http_server}/nope.png")
    t = time.monotonic()
    with pytest.raises(FetchError, match="read timed out"):
        f.fetch(f"{http_server}/slow.png")
    with pytest.raises(FetchError, match="read timed out"):
        f.fetch(f"{http_server}/drip.png")     # bytes keep coming, but too slowly: total deadline
    assert time.monotonic() - t < 3
    with pytest.raises(FetchError, match="Content-Length"):
        f.fetch(f"{http_server}/huge.png")
    with pytest.raises(FetchError, match="cannot connect"):
        f.fetch("http://127.0.0.1:9/x.png")


def test_fetch_messages_hide_url_credentials(tmp_path):
    f = ImageFetcher(tmp_path, connect_timeout=0.5, policy=FetchPolicy(allow_private_urls=True))
    with pytest.raises(FetchError) as e:
        f.fetch("http://user:s3cret@127.0.0.1:9/x.png")
    assert "s3cret" not in str(e.value)


# ---------------------------------------------------------------- small pieces
def test_survey_finds_duplicates_of_valid_records_only(tmp_path):
    rows = [{"id": "a", "title": "A", "brand": "X", "category": "c1 > c2"},
            {"id": "b"},                                # invalid (no title), id b
            {"id": "b", "title": "B"},                  # first *valid* b: not a duplicate
            {"id": "a", "title": "A again"}]            # duplicate of line 1
    cat = Catalog(_write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows).encode() + b"\nnot json\n"))
    sv = survey(cat)
    try:
        assert sv.records == 5 and sv.duplicates == {4: 1} and sv.unreadable_ids == 1
        assert "a" in sv.ids and "b" in sv.ids and "c" not in sv.ids
        assert sv.brands == {"X"} and sv.category_paths == {"c1>c2"}
    finally:
        sv.close()


def test_rejects_file_resume_truncates(tmp_path):
    path = tmp_path / "r.jsonl"
    w = RejectsWriter(path)
    w.write(line=1, reason="r1", stage="read", raw="x")
    size = w.size()
    w.write(line=2, reason="r2", stage="read", raw="y")
    w.close()
    w2 = RejectsWriter(path, resume_size=size)
    w2.write(line=2, reason="r2", stage="read", raw="y")
    w2.close()
    assert [e["line"] for e in read_rejects(path)] == [1, 2]
    RejectsWriter(path).close()          # a fresh load removes old rejects
    assert not path.exists()


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    store = CheckpointStore(tmp_path / "c.json")
    cp = Checkpoint(catalog={"size": 1}, index="i", settings="s", offset=10, line=3, refresh_interval="1s")
    store.save(cp)
    back = store.load()
    assert back.offset == 10 and back.refresh_interval == "1s"
    assert back.matches({"size": 1}, "i", "s") is None
    assert "catalog" in back.matches({"size": 2}, "i", "s")
    assert "models" in back.matches({"size": 1}, "i", "other")
    store.delete()
    assert store.load() is None


def test_error_text_and_counts():
    assert error_text({"type": "mapper_parsing_exception", "reason": "bad",
                       "caused_by": {"type": "x", "reason": "y"}}) == "mapper_parsing_exception: bad (caused by x: y)"
    c = Counts(read=3, indexed=1, rejected=1, unchanged=1)
    assert c.balanced() and Counts.from_dict(c.to_dict()) == c


# ---------------------------------------------------------------- documents (fields + vectors -> index document)
def _unit_rows(n, dim, seed):
    import numpy as np

    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_product_document_with_images_heads_and_ocr(enricher):
    import numpy as np

    from plugin_ingest.documents import MAX_STORED_DATA_URI, product_document, serialize

    p = validate({"id": "p1", "title": "小棕瓶 精华", "brand": "雅诗兰黛", "category": "美妆 > 护肤 > 精华",
                  "images": ["img/a.jpg", "https://u:SECRET@cdn.example.com/b.jpg"], "price": 620})
    big_uri = "data:image/png;base64," + "A" * (MAX_STORED_DATA_URI + 1)
    sources = [*p.images, big_uri]
    text = _unit_rows(1, 8, 0)[0]
    feats, vecs = _unit_rows(3, 16, 1), _unit_rows(3, 8, 2)
    fused = text + vecs.mean(axis=0)
    doc = product_document(enricher.fields(p), text_vector=text, fused_vector=fused, image_sources=sources,
                           image_features=feats, image_vectors=vecs, predicted_category="美妆>护肤",
                           ocr_text="estee lauder", content_hash="h1", decimals=4)
    assert doc[F.BRAND] == "estee lauder" and doc[F.PRICE] == 620                # the enriched fields, kept
    assert doc[F.TEXT_VECTOR] == np.round(text.astype(np.float64), 4).tolist()
    assert doc[F.FUSED_VECTOR] == np.round(fused.astype(np.float64), 4).tolist()
    assert [len(im[F.IMAGE_FEATURE]) for im in doc[F.IMAGES]] == [16, 16, 16]
    assert doc[F.IMAGES][2][F.IMAGE_VECTOR] == np.round(vecs[2].astype(np.float64), 4).tolist()
    urls = [im[F.IMAGE_URL] for im in doc[F.IMAGES]]
    assert urls[:2] == ["img/a.jpg", "https://***@cdn.example.com/b.jpg"]        # no credentials in the index
    assert urls[2].endswith(f"({len(big_uri)} characters, not stored)") and len(urls[2]) < 100
    assert doc[F.IMAGE_URLS] == urls
    assert doc[F.PREDICTED_CATEGORY] == "美妆>护肤" and doc[F.OCR_TEXT] == "estee lauder"
    assert doc[F.CONTENT_HASH] == "h1"
    assert json.loads(serialize(doc)) == doc and "小棕瓶" in serialize(doc)       # compact, non-ASCII kept
    mapped = product_index_body(VectorDims(shared=8, image_feature=16))["mappings"]["properties"]
    assert set(doc) <= set(mapped)               # the mapping is strict: every field the document has is mapped


def test_product_document_without_images_or_heads(enricher):
    from plugin_ingest.documents import product_document, update_document

    p = validate({"id": "p2", "title": "Oak chair"})
    text = _unit_rows(1, 8, 3)[0]
    doc = product_document(enricher.fields(p), text_vector=text, fused_vector=text, predicted_category="x",
                           content_hash="h2")
    assert doc[F.FUSED_VECTOR] == doc[F.TEXT_VECTOR]
    assert F.IMAGES not in doc and F.IMAGE_URLS not in doc and F.OCR_TEXT not in doc
    assert F.PREDICTED_CATEGORY not in doc                       # a category is read off photos: none here
    feats = _unit_rows(2, 16, 4)
    doc = product_document({}, text_vector=text, fused_vector=text, image_sources=["a.jpg", "b.jpg"],
                           image_features=feats, content_hash="h3")
    assert all(F.IMAGE_VECTOR not in im for im in doc[F.IMAGES])  # no heads: raw features only
    with pytest.raises(ValueError, match="one feature row per image"):
        product_document({}, text_vector=text, fused_vector=text, image_sources=["a.jpg"], image_features=feats,
                         content_hash="h")
    assert update_document({F.PRICE: 5}, "h4") == {"doc": {F.PRICE: 5, F.CONTENT_HASH: "h4"}}
