"""``--part i/N`` against the real local OpenSearch node: parts loading concurrently into one index.

Three processes load parts 1/3, 2/3 and 3/3 of one catalog at the same time, each with
``--create``; the index they make together must equal a single load of the catalog (same ids,
same content hashes, same documents), and their rejects files together must equal its
rejects file.  The encoders are the deterministic stand-ins of ``test_ingest_e2e.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from opensearchpy import helpers

from mappings import fields as F
from plugin_ingest.ingestor import IngestError, IngestInterrupted, Ingestor
from plugin_ingest.parts import PART_MERGE_NOTE, Part, part_of
from plugin_ingest.rejects import read_rejects
from test_ingest_e2e import HashEncoders, _catalog, _count, _jpeg, _options

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from pathlib import Path
from engine.client import ConnectionSettings
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.ingestor import IngestOptions, Ingestor
from plugin_ingest.parts import parse_part
from test_ingest_e2e import HashEncoders
catalog, index, url, work, part = sys.argv[2:7]
p = parse_part(part)
opts = IngestOptions(index=index, create=True, part=p, batch_size=4, bulk_docs=4, progress=False,
                     fetch_policy=FetchPolicy(allow_private_urls=True),
                     checkpoint_path=Path(work) / f"ckpt-{p.suffix}.json",
                     rejects_path=Path(work) / f"rejects-{p.suffix}.jsonl")
logs = []
r = Ingestor(catalog, opts, client=ConnectionSettings.resolve(url).client(), encoders=HashEncoders(heads=True),
             log=logs.append).run()
print("RESULT " + json.dumps({"report": r.to_dict(), "logs": logs}, ensure_ascii=False))
"""


def _products(tmp_path: Path, n: int = 45) -> list[dict]:
    img = tmp_path / "img"
    img.mkdir(exist_ok=True)
    brands = ["雅诗兰黛", "兰蔻", "IKEA", "宜家家居", "欧莱雅"]
    cats = [["美妆", "护肤"], ["家居", "家具", "椅子"], ["美妆", "彩妆"]]
    out = []
    for i in range(n):
        _jpeg(img / f"p{i}.jpg", (i * 37 % 255, 90, 200 - i * 3))
        out.append({"id": f"p{i}", "title": f"{brands[i % 5]} 新品 {i}", "brand": brands[i % 5], "price": 10 + i,
                    "category": cats[i % 3], "images": [f"img/p{i}.jpg"] + (["img/missing.jpg"] if i % 9 == 4 else [])})
    return out


def _catalog_with_problems(tmp_path: Path) -> Path:
    lines = [json.dumps(p, ensure_ascii=False) for p in _products(tmp_path)]
    lines.insert(7, '{"id": "broken", "title": ')                          # no readable id: part 1
    lines.insert(15, json.dumps({"id": "no-title", "price": 3}))           # invalid, with an id
    lines.insert(30, json.dumps({"id": "p12", "title": "duplicate of p12"}, ensure_ascii=False))
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _docs(client, index) -> dict[str, dict]:
    client.indices.refresh(index=index)
    return {h["_id"]: h["_source"] for h in helpers.scan(client, index=index, query={"query": {"match_all": {}}})}


def test_three_parts_loaded_concurrently_equal_a_single_load(local_engine, os_client, fresh_index, tmp_path):
    path = _catalog_with_problems(tmp_path)
    single, parted = fresh_index("parts-single"), fresh_index("parts-3")
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-c", _CHILD, str(REPO), str(path), parted, local_engine.url(), str(work)]
    procs = [subprocess.Popen(cmd + [f"{i}/3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 2, 3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    results = [json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:]) for out, _ in outs]

    whole = Ingestor(path, _options(tmp_path, single, create=True, batch_size=4, bulk_docs=4),
                     client=os_client, encoders=HashEncoders(heads=True)).run()

    # the index the three parts made is the single load's index
    a, b = _docs(os_client, single), _docs(os_client, parted)
    assert len(a) == whole.counts.indexed == 45
    assert sorted(a) == sorted(b)
    assert {k: v[F.CONTENT_HASH] for k, v in a.items()} == {k: v[F.CONTENT_HASH] for k, v in b.items()}
    assert a == b                                       # vectors, tokens, facets: the whole document

    # each part settled its own records and counted the rest as the other parts'
    reports = [r["report"] for r in results]
    assert [r["part"] for r in reports] == ["1/3", "2/3", "3/3"]
    total = whole.counts.read
    for r in reports:
        c = r["counts"]
        assert c["read"] == total
        assert c["read"] == c["indexed"] + c["rejected"] + c["unchanged"] + c["other_parts"]
        assert r["complete"] and PART_MERGE_NOTE in r["notes"]
    for key in ("indexed", "rejected", "images", "images_dropped"):
        assert sum(r["counts"][key] for r in reports) == getattr(whole.counts, key), key
    owned = [{k for k in b if part_of(k, 3) == i} for i in (1, 2, 3)]
    assert [r["counts"]["indexed"] for r in reports] == [len(o) for o in owned]

    # together, the parts' rejects files are the single load's, each entry once
    def entries(p):
        return [(e["line"], e["id"], e["stage"], e["reason"], e["rejected"]) for e in read_rejects(p)]
    split = sorted(e for i in (1, 2, 3) for e in entries(work / f"rejects-part-{i}-of-3.jsonl"))
    assert split == sorted(entries(tmp_path / f"{single}.rejects.jsonl")) and len(split) == 3 + 5

    # one index, created once; the others found it (made meanwhile, or before they looked)
    created = [any(m.startswith(f"created index {parted}") for m in r["logs"]) for r in results]
    assert created.count(True) == 1, [r["logs"] for r in results]
    settings = os_client.indices.get_settings(index=parted)[parted]["settings"]["index"]
    assert settings.get("refresh_interval", "1s") != "-1"   # the parts left refresh as it was
    assert not any((work / f"ckpt-part-{i}-of-3.json").exists() for i in (1, 2, 3))


def test_parts_racing_to_create_the_index_all_go_on(os_client, fresh_index):
    """Create-if-absent: of parts creating one index at the same instant, one creates it and the
    others check it and go on; a part with other models is refused, naming why."""
    from plugin_ingest.ingestor import IngestOptions
    from plugin_ingest.target import prepare_index

    for attempt in range(3):
        index = fresh_index("parts-race")
        n = 6
        barrier = threading.Barrier(n)
        results: list = [None] * n

        def go(i):
            o = IngestOptions(index=index, create=True, part=Part(i + 1, n), progress=False)
            barrier.wait()
            try:
                results[i] = prepare_index(os_client, o, HashEncoders(), lambda m: None)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(isinstance(r, bool) for r in results), results
        assert results.count(False) == 1                # exactly one created it

    other = HashEncoders(heads=True)                    # another space: not the index's
    o = IngestOptions(index=index, create=True, part=Part(1, 2), progress=False)
    with pytest.raises(IngestError, match="does not fit these models") as exc:
        prepare_index(os_client, o, other, lambda m: None)
    assert "--recreate" not in str(exc.value)           # refused with parts: not offered


def test_delete_missing_with_parts_deletes_only_the_parts_own_ids(os_client, fresh_index, tmp_path):
    index = fresh_index("parts-delete")
    products = _products(tmp_path, 24)
    path = _catalog(tmp_path / "c.jsonl", products)
    r = Ingestor(path, _options(tmp_path, index, create=True), client=os_client, encoders=HashEncoders()).run()
    assert r.counts.indexed == 24
    kept = products[:15]
    gone = {p["id"] for p in products[15:]}
    path = _catalog(path, kept)
    deleted = []
    for i in (1, 2, 3):
        before = set(_docs(os_client, index))
        rep = Ingestor(path, _options(tmp_path, index, delete_missing=True, part=Part(i, 3)),
                       client=os_client, encoders=HashEncoders()).run()
        after = set(_docs(os_client, index))
        mine = {g for g in gone if part_of(g, 3) == i}
        assert before - after == mine                   # only this part's missing ids
        # (a product kept without its missing image is written again, to retry the image)
        assert rep.counts.deleted == len(mine) and rep.counts.unchanged + rep.counts.indexed == sum(
            part_of(p["id"], 3) == i for p in kept)
        deleted.append(rep.counts.deleted)
    assert sum(deleted) == len(gone) and _count(os_client, index) == 15


def test_a_part_resumes_from_its_own_checkpoint(os_client, fresh_index, tmp_path):
    index = fresh_index("parts-resume")
    path = _catalog_with_problems(tmp_path)
    saves = []

    def crash(cp):
        saves.append(cp.line)
        if len(saves) == 2:
            raise RuntimeError("simulated crash")

    part = Part(2, 3)
    opts = _options(tmp_path, index, create=True, batch_size=4, bulk_docs=4, part=part)
    with pytest.raises(IngestInterrupted, match="Run the same command again"):
        Ingestor(path, opts, client=os_client, encoders=HashEncoders(), on_checkpoint=crash).run()
    ckpt = Path(opts.checkpoint_path)
    assert json.loads(ckpt.read_text())["line"] == saves[1]
    enc = HashEncoders()
    # another part's load of the same index does not take this part's checkpoint
    other = Ingestor(path, _options(tmp_path, index, part=Part(3, 3), checkpoint_path=tmp_path / "c3.json",
                                    rejects_path=tmp_path / "r3.jsonl"), client=os_client, encoders=HashEncoders()).run()
    assert other.resumed_from_line == 0 and ckpt.exists()
    r = Ingestor(path, _options(tmp_path, index, batch_size=4, bulk_docs=4, part=part), client=os_client,
                 encoders=enc).run()
    c = r.counts
    assert r.resumed_from_line == saves[1] and c.balanced() and c.read == 48
    ids = {f"p{i}" for i in range(45)}
    mine = {p for p in ids if part_of(p, 3) == 2}
    assert c.indexed + c.unchanged == len(mine) and len(enc.passages) <= len(mine)
    theirs = {p for p in ids if part_of(p, 3) == 3}
    assert set(_docs(os_client, index)) == mine | theirs and not ckpt.exists()
