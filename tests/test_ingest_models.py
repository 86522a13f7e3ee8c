"""Ingest with the real ONNX encoders (and the trained heads when present) into the real node.

Skipped when the models are not built (`cmsearch models build`), or when the shared data is absent.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from mappings import fields as F
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.ingestor import IngestOptions, Ingestor

pytestmark = [pytest.mark.engine, pytest.mark.models, pytest.mark.data]


@pytest.fixture(scope="module")
def encoders():
    from models.manifest import ManifestError, default_models_dir, load_manifest
    from models.space import Space, SpaceError

    try:
        load_manifest(default_models_dir())
    except ManifestError as exc:
        pytest.skip(f"models not built: {exc}")
    try:
        return Space.load(strict=True).open_all()
    except SpaceError as exc:
        pytest.skip(f"models cannot be loaded: {exc}")


def test_ikea_sample_with_real_encoders(os_client, fresh_index, tmp_path, shared_data, encoders):
    rows = []
    with (shared_data / "ikea" / "products.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("image") and len(rows) < 24:
                rows.append({"id": r["id"], "title": f"{r['series']} {r['type']}, {r['color']}",
                             "description": r["description"], "brand": "IKEA", "category": ["IKEA", r["type"]],
                             "images": [str(shared_data / "ikea" / r["image"])]})
    path = tmp_path / "ikea.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    index = fresh_index("ingest-models")
    report = Ingestor(path, IngestOptions(index=index, create=True, progress=False, batch_size=8,
                                          checkpoint_path=tmp_path / "c.json",
                                          fetch_policy=FetchPolicy(allow_dirs=(shared_data,))),
                      client=os_client, encoders=encoders).run()
    assert report.counts.indexed == 24 and report.counts.rejected == 0
    os_client.indices.refresh(index=index)
    doc = os_client.get(index=index, id=rows[0]["id"])["_source"]
    dims = encoders.dims
    assert len(doc[F.TEXT_VECTOR]) == dims.shared and len(doc[F.FUSED_VECTOR]) == dims.shared
    image = doc[F.IMAGES][0]
    assert len(image[F.IMAGE_FEATURE]) == dims.image_feature
    assert abs(np.linalg.norm(image[F.IMAGE_FEATURE]) - 1) < 1e-3
    if encoders.has_heads:
        assert len(image[F.IMAGE_VECTOR]) == dims.shared
    else:
        assert F.IMAGE_VECTOR not in image and doc[F.FUSED_VECTOR] == doc[F.TEXT_VECTOR]
    # a product's own stored vectors find it first: text -> text, and photo -> photo (nested)
    res = os_client.search(index=index, body={"size": 1, "query": {"knn": {F.TEXT_VECTOR: {
        "vector": doc[F.TEXT_VECTOR], "k": 1}}}})
    assert res["hits"]["hits"][0]["_id"] == rows[0]["id"]
    res = os_client.search(index=index, body={"size": 1, "query": {"nested": {"path": F.IMAGES, "query": {"knn": {
        F.nested(F.IMAGE_FEATURE): {"vector": image[F.IMAGE_FEATURE], "k": 1}}}}}})
    assert res["hits"]["hits"][0]["_id"] == rows[0]["id"]
    # an English query encoded as a query finds a product of that type among the first hits
    q = encoders.embed_query(text=f"{rows[3]['title']}").text
    res = os_client.search(index=index, body={"size": 3, "query": {"knn": {F.TEXT_VECTOR: {
        "vector": q.tolist(), "k": 3}}}})
    assert rows[3]["id"] in [h["_id"] for h in res["hits"]["hits"]]


def test_cli_ingest_exit_status_and_reload(local_engine, os_client, fresh_index, tmp_path, encoders):
    """The command as a user runs it: non-zero on rejects, 0 with --accept-rejects, unchanged on reload."""
    from click.testing import CliRunner
    from PIL import Image

    from cmsearch.cmd_ingest import ingest

    Image.new("RGB", (64, 64), (200, 20, 20)).save(tmp_path / "red.jpg")
    rows = [{"id": "r1", "title": "红色 椅子", "images": ["red.jpg"]},
            {"id": "r2", "title": "Blue chair", "description": "A blue chair"},
            {"id": "r3"}]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    index = fresh_index("ingest-cli")
    args = [str(path), "--index", index, "--url", local_engine.url(), "--no-progress"]
    res = CliRunner().invoke(ingest, args + ["--create"])
    assert res.exit_code == 1, res.output
    assert "indexed" in res.stdout and "title: missing" in (tmp_path / "c.jsonl.rejects.jsonl").read_text()
    res = CliRunner().invoke(ingest, args + ["--accept-rejects", "--json"])
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout)["counts"]
    assert (counts["read"], counts["unchanged"], counts["rejected"]) == (3, 2, 1)


def test_heads_fill_image_vectors_fusion_and_predicted_category(os_client, fresh_index, tmp_path, encoders):
    """Real encoders with a small heads directory written by the training exporter (random weights:
    this checks the wiring and the dims, not the quality)."""
    from PIL import Image

    from models.training.export import write_heads
    from models.training.trainer import HeadParams
    from models.space import Space

    rng = np.random.default_rng(3)
    feat, text = encoders.dims.image_feature, int(encoders.manifest["text"]["dim"])
    cats = ["Home > Chairs", "Home > Lamps", "Food > Fruit"]
    heads_dir = tmp_path / "heads"
    write_heads(heads_dir,
                image_head=HeadParams("linear", feat, text, [(rng.standard_normal((text, feat)).astype(np.float32),
                                                              np.zeros(text, np.float32))]),
                text_head=HeadParams("identity", text, text, []), image_feature_dim=feat, text_dim=text,
                classifier=HeadParams("linear", feat, 3, [(rng.standard_normal((3, feat)).astype(np.float32),
                                                           np.zeros(3, np.float32))]),
                categories=cats)
    enc = Space.load(None, heads_dir, w_img=0.3, w_txt=0.7)
    assert enc.has_heads and enc.identity != encoders.identity and enc.identity.heads
    two = Space.load(None, heads_dir, threads=2)    # heads are too small to split: no pool of their own
    assert two._part("heads")._image.session.get_session_options().intra_op_num_threads == 1
    Image.new("RGB", (64, 64), (20, 200, 20)).save(tmp_path / "g.jpg")
    Image.new("RGB", (64, 64), (200, 20, 20)).save(tmp_path / "r.jpg")
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "h1", "title": "Green and red", "images": ["g.jpg", "r.jpg"]}) + "\n")
    index = fresh_index("ingest-heads")
    report = Ingestor(path, IngestOptions(index=index, create=True, progress=False, checkpoint_path=tmp_path / "c.json"),
                      client=os_client, encoders=enc).run()
    assert report.counts.indexed == 1
    doc = os_client.get(index=index, id="h1")["_source"]
    assert [len(i[F.IMAGE_VECTOR]) for i in doc[F.IMAGES]] == [text, text]
    assert doc[F.PREDICTED_CATEGORY] in {"Home>Chairs", "Home>Lamps", "Food>Fruit"}
    t = np.asarray(doc[F.TEXT_VECTOR])
    m = np.mean([np.asarray(i[F.IMAGE_VECTOR]) for i in doc[F.IMAGES]], axis=0)
    expected = 0.3 * m / np.linalg.norm(m) + 0.7 * t
    assert np.allclose(doc[F.FUSED_VECTOR], expected / np.linalg.norm(expected), atol=1e-4)
