"""Vector options against the real node: a scalar-quantized index without raw image features is
created by ingest, records its choice, gets documents that fit it, and answers text and photo searches."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mappings import VECTORS_META_KEY, VectorOptions
from mappings import fields as F
from test_ingest_e2e import HashEncoders, _count, _jpeg, _load

pytestmark = pytest.mark.engine

COLORS = {"red": (210, 20, 20), "green": (20, 200, 30), "blue": (20, 30, 210), "grey": (128, 128, 128)}


@pytest.fixture
def photo_catalog(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    rows = []
    for name, rgb in COLORS.items():
        _jpeg(img / f"{name}.jpg", rgb)
        rows.append({"id": name, "title": f"{name} chair", "brand": "acme", "category": "home > chairs",
                     "images": [f"img/{name}.jpg"]})
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_quantized_index_without_features_records_its_choice_and_answers(os_client, fresh_index, tmp_path,
                                                                          photo_catalog):
    from query_builder import QueryVectors, Searcher, SearchRequest

    index = fresh_index("vec-sq")
    enc = HashEncoders(heads=True)
    report, _ = _load(photo_catalog, os_client, tmp_path, index, encoders=enc, create=True,
                      vectors=VectorOptions(quantization="sq", image_feature=False))
    assert report.counts.indexed == len(COLORS) and report.counts.rejected == 0
    mapping = os_client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["_meta"][VECTORS_META_KEY] == {"format": 1, "quantization": "sq", "image_feature": False}
    assert mapping["properties"][F.TEXT_VECTOR]["method"]["parameters"]["encoder"]["name"] == "sq"
    assert F.IMAGE_FEATURE not in mapping["properties"][F.IMAGES]["properties"]
    doc = os_client.get(index=index, id="red")["_source"]
    assert doc[F.IMAGES] and all(F.IMAGE_FEATURE not in im for im in doc[F.IMAGES])

    # a second load into the index it made fits it (no "lacks field" refusal), and changes nothing
    report2, _ = _load(photo_catalog, os_client, tmp_path, index, encoders=HashEncoders(heads=True))
    assert report2.counts.unchanged == len(COLORS) and _count(os_client, index) == len(COLORS)

    # photo search: image -> image runs on the images' shared-space vectors (no raw features stored)
    red = doc[F.IMAGES][0][F.IMAGE_VECTOR]
    feature = np.ones(16, np.float32) / 4.0
    searcher = Searcher(os_client, "hybrid_minmax", None, index=index)
    photo = searcher.search(SearchRequest(vectors=QueryVectors(image=tuple(red), image_feature=tuple(feature)),
                                          size=3))
    assert photo.hits and photo.hits[0].id == "red"
    assert "image_image_knn" in photo.retrievers and any("no raw image features" in n for n in photo.notes)
    text = searcher.search(SearchRequest(text="green chair", vectors=QueryVectors(text=tuple(
        os_client.get(index=index, id="green")["_source"][F.TEXT_VECTOR])), size=3))
    assert text.hits and text.hits[0].id == "green"


def test_full_precision_index_keeps_features_and_image_search_uses_them(os_client, fresh_index, tmp_path,
                                                                       photo_catalog):
    from query_builder import QueryVectors, Searcher, SearchRequest

    index = fresh_index("vec-full")
    _load(photo_catalog, os_client, tmp_path, index, encoders=HashEncoders(heads=True), create=True)
    mapping = os_client.indices.get_mapping(index=index)[index]["mappings"]
    assert VectorOptions.from_mapping(mapping) == VectorOptions()
    doc = os_client.get(index=index, id="blue")["_source"]
    searcher = Searcher(os_client, "hybrid_minmax", None, index=index)
    im = doc[F.IMAGES][0]
    res = searcher.search(SearchRequest(vectors=QueryVectors(image=tuple(im[F.IMAGE_VECTOR]),
                                                             image_feature=tuple(im[F.IMAGE_FEATURE])), size=3))
    assert res.hits[0].id == "blue" and "image_image_knn" in res.retrievers


def test_index_create_cli_takes_the_options(os_client, fresh_index, tmp_path):
    from cmsearch.cli import cli as main
    from models.manifest import default_models_dir

    if not (default_models_dir() / "manifest.json").is_file():
        pytest.skip("no built models (cmsearch models build)")
    index = fresh_index("vec-cli")
    url = f"http://{os_client.transport.hosts[0]['host']}:{os_client.transport.hosts[0]['port']}"
    r = CliRunner().invoke(main, ["index", "create", index, "--heads", "none", "--quantize", "sq",
                                  "--no-image-feature", "--url", url])
    assert r.exit_code == 0, r.output
    assert "int8 scalar-quantized" in r.output and "without raw image features" in r.output
    r = CliRunner().invoke(main, ["index", "stats", index, "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["vectors"] == {"format": 1, "quantization": "sq", "image_feature": False}
    r = CliRunner().invoke(main, ["index", "create", index + "-bad", "--quantize", "pq", "--url", url])
    assert r.exit_code == 2 and "pq" in r.output


def test_an_unreadable_vector_record_is_a_clear_ingest_error(os_client, fresh_index, tmp_path, photo_catalog):
    import mappings
    from models.identity import META_KEY
    from plugin_ingest.load_options import IngestError

    index = fresh_index("vec-bad")
    enc = HashEncoders(heads=True)
    body = mappings.product_index_body(enc.dims, meta={META_KEY: enc.identity.to_meta()})
    body["mappings"]["_meta"][VECTORS_META_KEY] = {"format": 99}
    os_client.indices.create(index=index, body=body)
    with pytest.raises(IngestError, match=f"{index}.*vector options"):
        _load(photo_catalog, os_client, tmp_path, index, encoders=enc)
