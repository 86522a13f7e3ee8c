"""Shop the look on the real node with the real encoders: a scene of two product photos finds both.

A small catalog of real IKEA product photos (of distinct types) is ingested with the built
models (no heads: photo search runs on the raw backbone feature). The "scene" is two of those
photos side by side; a region search must list both products near the top, each with a box in
the half of the scene where it stands, through the API and through ``cmsearch search --regions``.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from models.space import Space, SpaceError
from plugin_ingest.ingestor import IngestOptions, Ingestor
from query_builder import AsyncSearcher, QueryImage, RegionSpec, RequestError, Searcher, SearchRequest, cut_regions

pytestmark = [pytest.mark.engine, pytest.mark.models, pytest.mark.data]

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
N_TYPES = 16
LEFT, RIGHT = 3, 11      # positions (in the catalog) of the two products put into the scene


@pytest.fixture(scope="module")
def space():
    try:
        return Space.load(None, None, strict=True)
    except SpaceError as exc:
        pytest.skip(f"models not built (run `cmsearch models build`): {exc}")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = DATA / "ikea" / "products.jsonl"
    if not path.is_file():
        pytest.skip(f"IKEA products not found under {DATA} (set CMSEARCH_SHARED_DATA)")
    d = tmp_path_factory.mktemp("regions-catalog")
    seen, rows = set(), []
    for line in path.open(encoding="utf-8"):
        p = json.loads(line)
        if not p.get("image") or p["type"] in seen:
            continue
        seen.add(p["type"])
        shutil.copy(DATA / "ikea" / p["image"], d / f"{p['id']}.jpg")
        rows.append({"id": p["id"], "title": f"{p['series']} {p['type']}", "images": [f"{p['id']}.jpg"]})
        if len(rows) == N_TYPES:
            break
    (d / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return d, [r["id"] for r in rows]


@pytest.fixture(scope="module")
def index(os_client, space, catalog, tmp_path_factory):
    d, ids = catalog
    name = f"regions-{os.getpid()}"
    work = tmp_path_factory.mktemp("regions-ingest")
    opts = IngestOptions(index=name, recreate=True, progress=False, checkpoint_path=work / "ckpt",
                         rejects_path=work / "rejects")
    assert Ingestor(d / "catalog.jsonl", opts, client=os_client, encoders=space).run().counts.indexed == len(ids)
    os_client.indices.refresh(index=name)
    yield name
    os_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def scene(catalog, tmp_path_factory) -> tuple[Path, int, str, str]:
    """Two product photos side by side on one canvas: (file, width, left id, right id)."""
    d, ids = catalog
    left, right = (Image.open(d / f"{ids[i]}.jpg").convert("RGB").resize((320, 320)) for i in (LEFT, RIGHT))
    canvas = Image.new("RGB", (640, 320), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (320, 0))
    path = tmp_path_factory.mktemp("scene") / "scene.jpg"
    canvas.save(path, quality=92)
    return path, 640, ids[LEFT], ids[RIGHT]


def _centre_x(region) -> float:
    return (region[0] + region[2]) / 2


def test_a_scene_of_two_products_finds_both_with_the_box_of_each_on_its_half(os_client, space, index, scene):
    path, width, left_id, right_id = scene
    request = SearchRequest(images=(QueryImage.from_path(path),), size=5)
    res = Searcher(os_client, "image", space, index=index).search_regions(request)
    top = {h.id: h for h in res.hits[:3]}
    assert left_id in top and right_id in top, [h.id for h in res.hits]
    assert _centre_x(top[left_id].region) < width / 2 < _centre_x(top[right_id].region)
    assert all(h.region is not None for h in res.hits)
    assert res.notes[0].startswith(f"regions: {len(cut_regions(width, 320))} boxes")
    d = res.to_dict()["hits"][0]
    assert isinstance(d["region"], list) and len(d["region"]) == 4
    # the same through the asyncio searcher, with the reciprocal-rank merge
    from opensearchpy import AsyncOpenSearch

    async def run():
        client = AsyncOpenSearch(hosts=os_client.transport.hosts)
        try:
            return await AsyncSearcher(client, "image", space, index=index).search_regions(
                request, RegionSpec(merge="rrf"))
        finally:
            await client.close()

    ares = asyncio.run(run())
    assert {left_id, right_id} <= {h.id for h in ares.hits[:3]}


def test_a_region_search_needs_one_photo_and_a_space(os_client, space, index, scene):
    with pytest.raises(RequestError, match="exactly one photo"):
        Searcher(os_client, "image", space, index=index).search_regions(SearchRequest(text="lamp"))
    with pytest.raises(RequestError, match="needs a searcher with a space"):
        Searcher(os_client, "image", None, index=index).search_regions(
            SearchRequest(images=(QueryImage.from_path(scene[0]),)))
    with pytest.raises(RequestError, match="could not be decoded"):
        Searcher(os_client, "image", space, index=index).search_regions(
            SearchRequest(images=(QueryImage(b"not a photo", "bad.jpg"),)))


def test_cli_regions_lists_both_products_with_their_boxes(os_client, index, scene):
    from cmsearch.cli import cli

    path, width, left_id, right_id = scene
    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])
    base = ["--url", url, "--index", index, "--heads", "none"]
    r = CliRunner().invoke(cli, ["search", "--image", str(path), "--regions", "--profile", "image", "--size", "5",
                                 *base])
    assert r.exit_code == 0, r.output
    assert "region (l,t,r,b)" in r.output and left_id in r.output and right_id in r.output
    r = CliRunner().invoke(cli, ["search", "--image", str(path), "--regions", "--region-merge", "rrf", "--json",
                                 "--region-overlap", "0.5", "--profile", "image", *base])
    assert r.exit_code == 0, r.output
    hits = {h["id"]: h for h in json.loads(r.output)["hits"][:3]}
    assert _centre_x(hits[left_id]["region"]) < width / 2 < _centre_x(hits[right_id]["region"])
    for bad, why in ((["--regions", "lamp"], "exactly one --image"),
                     (["--image", str(path), "--image", str(path), "--regions"], "exactly one --image"),
                     (["--image", str(path), "--regions", "--region-grids", "1,x"], "comma-separated"),
                     (["--image", str(path), "--regions", "--region-grids", "12"], "from 1 to 8"),
                     (["--image", str(path), "--regions", "--region-overlap", "1"], "overlap must be at least 0"),
                     (["--image", str(path), "--region-overlap", "0.5"], "go with --regions"),
                     (["--image", str(path), "--region-merge", "max"], "go with --regions")):
        r = CliRunner().invoke(cli, ["search", *bad, *base])
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, (bad, r.output)
