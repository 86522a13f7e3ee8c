"""The README's example backend (examples/backend.py) against the real node, with the real encoders.

A handful of products get their text vectors from the real e5 encoder and their image
features from the real MobileNetV2 encoder; the app is driven through FastAPI's TestClient
(its lifespan makes the AsyncOpenSearch client, the app closes it).  Skipped until the
models are built.
"""
from __future__ import annotations

import io
import uuid

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("aiohttp")

import mappings  # noqa: E402
from analysis import Tokenizer  # noqa: E402
from mappings import VectorDims  # noqa: E402
from mappings import fields as F  # noqa: E402
from models.identity import META_KEY  # noqa: E402

pytestmark = pytest.mark.engine

PROFILE = {"name": "backend", "retrievers": ["lexical", "text_knn", "image_image_knn"]}
# id, title, brand, colour of the drawn product photo, its shape
PRODUCTS = [
    ("b1", "红色实木餐椅", "ikea", (200, 30, 30), "disc"),
    ("b2", "不锈钢电热水壶", "midea", (40, 60, 200), "stripes"),
    ("b3", "华为智能手机", "huawei", (30, 160, 60), "checks"),
    ("b4", "女士轻便跑步鞋", "nike", (230, 200, 40), "ring"),
]


def _photo(colour, shape) -> bytes:
    """A product photo: a coloured pattern on white (distinct enough for a real image encoder)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (224, 224), "white")
    d = ImageDraw.Draw(im)
    if shape == "disc":
        d.ellipse((30, 30, 194, 194), fill=colour)
    elif shape == "stripes":
        for x in range(0, 224, 32):
            d.rectangle((x, 0, x + 14, 224), fill=colour)
    elif shape == "checks":
        for x in range(0, 224, 56):
            for y in range(0, 224, 56):
                if (x + y) // 56 % 2 == 0:
                    d.rectangle((x, y, x + 55, y + 55), fill=colour)
    else:
        d.ellipse((20, 20, 204, 204), outline=colour, width=24)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def space():
    from models.space import Space

    sp = Space.load(None, None, strict=False)
    if sp.problems:
        pytest.skip("real encoders not built (run `cmsearch models build`): " + "; ".join(sp.problems))
    return sp


@pytest.fixture(scope="module")
def shop(os_client, space):
    name = f"backend-{uuid.uuid4().hex[:8]}"
    titles = [p[1] for p in PRODUCTS]
    text = np.asarray(space.encode_text(titles, kind="passage"), dtype=np.float32)
    photos = {p[0]: _photo(p[3], p[4]) for p in PRODUCTS}
    feats, _, ok, errors = space.encode_images([photos[p[0]] for p in PRODUCTS])
    assert not errors and len(ok) == len(PRODUCTS)
    os_client.indices.create(index=name, body=mappings.product_index_body(
        VectorDims(shared=text.shape[1], image_feature=feats.shape[1]),
        meta={META_KEY: space.identity.to_meta()}))   # the app finds this space from the index
    tk = Tokenizer([p[2] for p in PRODUCTS])
    for (pid, title, brand, _, _), tv, fv in zip(PRODUCTS, text, feats):
        os_client.index(index=name, id=pid, body={
            F.ID: pid, F.TITLE: tk.field_text(title), F.TITLE_RAW: title, F.BRAND: brand,
            F.BRAND_TEXT: tk.field_text(brand), F.TEXT_VECTOR: (tv / np.linalg.norm(tv)).tolist(),
            F.IMAGE_URLS: [f"{pid}.png"],
            F.IMAGES: [{F.IMAGE_URL: f"{pid}.png", F.IMAGE_FEATURE: (fv / np.linalg.norm(fv)).tolist()}]})
    os_client.indices.refresh(index=name)
    yield name, photos
    os_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def client(os_client, shop):
    from fastapi.testclient import TestClient

    from examples.backend import create_app

    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])
    app = create_app(url=url, index=shop[0], profile=PROFILE)
    with TestClient(app) as c:        # runs the lifespan: the async client is opened and closed
        yield c


def test_text_search_endpoint(client):
    for q, want in (("红色的椅子", "b1"), ("running shoes for women", "b4"), ("烧水壶", "b2")):
        r = client.get("/search", params={"q": q, "size": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["hits"][0]["id"] == want, (q, body["hits"])
        assert body["profile"] == "backend" and "text_knn" in body["retrievers"]


def test_text_search_filters_and_explain(client):
    r = client.get("/search", params={"q": "手机", "brand": ["huawei", "nike"], "explain": "true"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and {h["brand"] for h in hits} <= {"huawei", "nike"} and hits[0]["id"] == "b3"
    assert {s["retriever"] for s in hits[0]["explain"]["retrievers"]} == {"lexical", "text_knn"}


def test_photo_search_endpoint_finds_the_product_in_the_photo(client, shop):
    from PIL import Image

    _, photos = shop
    for pid in ("b2", "b3"):
        im = Image.open(io.BytesIO(photos[pid])).convert("RGB").resize((300, 300))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)       # another size and format than the indexed photo
        r = client.post("/photo-search", content=buf.getvalue(), headers={"Content-Type": "image/jpeg"},
                        params={"size": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["hits"][0]["id"] == pid and body["hits"][0]["image_url"] == f"{pid}.png", body["hits"]
        assert body["retrievers"] == ["image_image_knn"]


def test_bad_input_is_a_clear_400_and_engine_failure_a_502(client, os_client):
    r = client.post("/photo-search", content=b"not an image at all", headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400 and "could not be decoded" in r.json()["error"]
    r = client.post("/photo-search", content=b"")
    assert r.status_code == 400 and "request body" in r.json()["error"]
    r = client.get("/search", params={"q": "椅子", "size": 1000})
    assert r.status_code == 400 and "size" in r.json()["error"]
    r = client.get("/search", params={"q": "椅子", "price_min": 9, "price_max": 1})
    assert r.status_code == 400 and "above max" in r.json()["error"]


def test_a_missing_index_is_a_502_naming_it(os_client, space):
    from fastapi.testclient import TestClient

    from examples.backend import create_app

    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])
    with TestClient(create_app(url=url, index="no-such-index-here", profile="bm25", space=space)) as c:
        r = c.get("/search", params={"q": "椅子"})
    assert r.status_code == 502 and "'no-such-index-here' does not exist" in r.json()["error"]
