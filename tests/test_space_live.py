"""The one space on the real node: query photos find what their products' photos are, and an index
refuses vectors of another space (search, ingest and the CLI alike).

A small catalog of distinct synthetic photos is ingested with the real encoders and two sets of
small random heads of the same dimension (written by the training exporter, registered in a
private models dir that links the real model files): the wiring and the refusals are what is
tested here, not the quality of the heads.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from models.space import Space, SpaceError
from plugin_ingest.ingestor import IngestError, IngestOptions, Ingestor
from query_builder import QueryImage, SearchError, Searcher, SearchRequest

pytestmark = [pytest.mark.engine, pytest.mark.models]

N = 8


def _photo(i: int, size: int = 160) -> np.ndarray:
    """Product i on a white background: a distinct shape, colour and texture per product."""
    rng = np.random.default_rng(100 + i)
    arr = np.full((size, size, 3), 255, np.uint8)
    y, x = np.mgrid[0:size, 0:size]
    colour = rng.integers(0, 200, 3)
    if i % 2:
        mask = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / (2.5 + i % 3)) ** 2
    else:
        mask = (abs(x - size / 2) < size / (3 + i % 4)) & (abs(y - size / 2) < size / (2.2 + i % 3))
    stripes = ((x * (i + 1) // 16 + y * (i % 3) // 16) % 2)[..., None] * rng.integers(0, 55, 3)
    arr[mask] = (colour + stripes[mask]).clip(0, 255).astype(np.uint8)
    return arr, mask


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A private models dir (links to the real model files) with two registered sets of heads."""
    from models.heads_registry import register_heads
    from models.manifest import default_models_dir
    from models.training.export import write_heads
    from models.training.trainer import HeadParams

    real = default_models_dir()
    try:
        Space.load(real, None, strict=True)
    except SpaceError as exc:
        pytest.skip(f"models not built: {exc}")
    d = tmp_path_factory.mktemp("models")
    for f in real.iterdir():
        if f.is_file():
            (d / f.name).symlink_to(f)
    manifest = json.loads((real / "manifest.json").read_text())
    feat, text = manifest["spaces"]["image_feature"]["dim"], manifest["text"]["dim"]
    heads = {}
    for name, seed in (("a", 1), ("b", 2)):
        rng = np.random.default_rng(seed)
        out = d / f"trained-{name}"
        write_heads(out, image_head=HeadParams("linear", feat, text, [(rng.standard_normal((text, feat)).astype(
                        np.float32), np.zeros(text, np.float32))]),
                    text_head=HeadParams("identity", text, text, []), image_feature_dim=feat, text_dim=text)
        heads[name] = register_heads(d, out)
    return d, heads


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    d = tmp_path_factory.mktemp("space-catalog")
    rows = []
    for i in range(N):
        arr, _ = _photo(i)
        Image.fromarray(arr).save(d / f"p{i}.png")
        rows.append({"id": f"p{i}", "title": f"产品 {i}", "images": [f"p{i}.png"]})
    path = d / "catalog.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _ingest(client, index, catalog, space, tmp_path, **kw):
    opts = IngestOptions(index=index, create=True, progress=False, checkpoint_path=tmp_path / f"{index}.ckpt",
                         rejects_path=tmp_path / f"{index}.rejects", **kw)
    return Ingestor(catalog, opts, client=client, encoders=space).run()


@pytest.fixture(scope="module")
def headed_index(os_client, models_dir, catalog, tmp_path_factory):
    d, heads = models_dir
    space = Space.load(d, heads["a"], strict=True).open_all()
    index = f"space-a-{os.getpid()}"
    os_client.indices.delete(index=index, ignore_unavailable=True)
    report = _ingest(os_client, index, catalog, space, tmp_path_factory.mktemp("ing"))
    assert report.counts.indexed == N
    os_client.indices.refresh(index=index)
    yield index, space
    os_client.indices.delete(index=index, ignore_unavailable=True)


def _top(searcher, data: bytes, n: int = 3) -> list[str]:
    return [h.id for h in searcher.search(SearchRequest(images=(QueryImage(data, "q.png"),), size=n)).hits]


def test_a_transparent_cut_out_finds_what_the_photo_on_white_finds(os_client, headed_index):
    index, space = headed_index
    s = Searcher(os_client, "image", space, index=index)
    for i in (1, 2, 5):
        arr, mask = _photo(i)
        rgba = np.dstack([arr, (mask * 255).astype(np.uint8)])
        rgba[~mask, :3] = 0                                    # hidden pixels are black, as in many cut-outs
        cut_out = _png(Image.fromarray(rgba, "RGBA"))
        on_white = _png(Image.fromarray(arr))
        assert _top(s, cut_out) == _top(s, on_white) and _top(s, on_white)[0] == f"p{i}"


def test_a_rotated_photo_with_exif_finds_what_the_upright_photo_finds(os_client, headed_index):
    index, space = headed_index
    s = Searcher(os_client, "image", space, index=index)
    for i in (0, 3, 6):
        arr, _ = _photo(i)
        exif = Image.Exif()
        exif[0x0112] = 6                                        # stored sideways; view rotated 90° clockwise
        buf = io.BytesIO()    # PNG (eXIf chunk): lossless, so upright it is the very same pixels
        Image.fromarray(arr).transpose(Image.Transpose.ROTATE_90).save(buf, "PNG", exif=exif.tobytes())
        up = _png(Image.fromarray(arr))
        assert _top(s, buf.getvalue()) == _top(s, up) and _top(s, up)[0] == f"p{i}"


def test_other_heads_of_the_same_dimension_are_refused_by_search_and_ingest(os_client, headed_index, models_dir,
                                                                            catalog, tmp_path):
    index, space_a = headed_index
    d, heads = models_dir
    space_b = Space.load(d, heads["b"], strict=True)
    assert space_b.dims == space_a.dims and space_b.identity != space_a.identity
    with pytest.raises(SearchError) as e:
        Searcher(os_client, "image", space_b, index=index).search(SearchRequest(text="产品"))
    assert space_a.identity.id in str(e.value) and space_b.identity.id in str(e.value)
    # an explicit override searches anyway, and says so
    res = Searcher(os_client, "dense_text", space_b, index=index, allow_other_space=True).search(
        SearchRequest(text="产品"))
    assert any("searching anyway" in n for n in res.notes)
    with pytest.raises(IngestError) as e:
        _ingest(os_client, index, catalog, space_b, tmp_path)
    msg = str(e.value)
    assert space_a.identity.id in msg and space_b.identity.id in msg and "--recreate" in msg


def _url(os_client) -> str:
    return "http://{host}:{port}".format(**os_client.transport.hosts[0])


def test_cli_index_stats_shows_the_recorded_space(os_client, headed_index):
    from cmsearch.cli import cli

    index, space = headed_index
    r = CliRunner().invoke(cli, ["index", "stats", index, "--url", _url(os_client)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["space"]["id"] == space.identity.id


def test_cli_search_finds_the_index_heads_and_heads_none_is_refused_clearly(os_client, headed_index, models_dir,
                                                                           catalog):
    from cmsearch.cli import cli

    index, space = headed_index
    d, _ = models_dir
    photo = catalog.parent / "p3.png"
    base = ["--url", _url(os_client), "--index", index, "--models", str(d)]
    r = CliRunner().invoke(cli, ["search", "--image", str(photo), "--profile", "image", "--explain", *base])
    assert r.exit_code == 0, r.output
    assert "p3" in r.output.splitlines()[2] and "time: load" in r.output and "encode" in r.output
    for cmd in (["search", "产品", "--heads", "none", *base],
                ["search", "产品", "--heads", "NONE", "--profile", "dense_text", *base]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit), r.output
        assert space.identity.id in r.output and "Traceback" not in r.output


def test_cli_photo_search_with_a_text_profile_and_no_heads_is_a_clear_message(os_client, fresh_index, models_dir,
                                                                              catalog, tmp_path):
    from cmsearch.cli import cli

    d, _ = models_dir
    index = fresh_index("space-noheads")
    assert _ingest(os_client, index, catalog, Space.load(d, None, strict=True), tmp_path).counts.indexed == N
    r = CliRunner().invoke(cli, ["search", "--image", str(catalog.parent / "p1.png"), "--profile", "dense_text",
                                 "--url", _url(os_client), "--index", index, "--models", str(d)])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert "dense_text has no retriever for this request" in r.output and "Traceback" not in r.output


def test_cli_eval_without_heads_uses_the_index_heads_and_heads_none_means_none(os_client, headed_index, models_dir,
                                                                             catalog, tmp_path):
    from cmsearch.cli import cli

    index, space = headed_index
    d, _ = models_dir
    (tmp_path / "qrels.txt").write_text("".join(f"q{i} 0 p{i} 1\n" for i in range(3)))
    (tmp_path / "queries.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "image": str(catalog.parent / f"p{i}.png")}) + "\n" for i in range(3)))
    base = ["--url", _url(os_client), "--index", index, "--models", str(d), "--judgments", str(tmp_path)]
    r = CliRunner().invoke(cli, ["eval", "--profile", "image", "--json", str(tmp_path / "run.json"), *base])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run.json").read_text())
    assert "heads not loaded" not in r.output and "text->image" not in r.output
    summary = run["summaries"]["image"] if "summaries" in run else run
    assert summary["queries"] == 3 and summary["not_applicable"] == 0 and summary["means"]["mrr"] == 1.0
    r = CliRunner().invoke(cli, ["eval", "--profile", "image", "--heads", "none", *base])
    assert r.exit_code == 1 and space.identity.id in r.output and "Traceback" not in r.output
