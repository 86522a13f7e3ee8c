"""``--part i/N`` without a cluster: the partition itself, its validation, and dry runs of parts.

The live side (three parts loading concurrently into one index, equal to a single load) is in
``test_ingest_parts_live.py``.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin_ingest.ingestor import IngestError, IngestOptions, Ingestor
from plugin_ingest.load_options import default_checkpoint_path, default_rejects_path
from plugin_ingest.lock import LoadLock
from plugin_ingest.parts import Part, PartError, parse_part, part_of
from plugin_ingest.rejects import read_rejects


# ---------------------------------------------------------------- the partition
def test_part_of_is_sha256_of_the_id_mod_n_plus_one():
    """The documented formula, recomputed here, and pinned values: a change of hash would send a
    product to another part than the workers of an earlier version (or another tool) think."""
    for pid in ["p1", "商品-42", "x" * 500, "7"]:
        for n in (1, 2, 3, 10, 1000):
            expected = int.from_bytes(hashlib.sha256(pid.encode("utf-8")).digest()[:8], "big") % n + 1
            assert part_of(pid, n) == expected
    # written down once: the loop above cannot catch a change made to the formula and the test alike
    assert [part_of(f"p{i}", 3) for i in range(8)] == [2, 1, 2, 2, 3, 2, 2, 1]
    assert part_of("商品-42", 10) == 4


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_every_id_belongs_to_exactly_one_part(n):
    ids = [f"id-{i}" for i in range(3000)] + ["", " ", "商品", "a/b", "\u00e9"]
    parts = [Part(i, n) for i in range(1, n + 1)]
    for pid in ids:
        assert sum(p.owns(pid) for p in parts) == 1, pid
    sizes = Counter(part_of(pid, n) for pid in ids)
    assert set(sizes) == set(range(1, n + 1))
    assert max(sizes.values()) < 1.25 * len(ids) / n      # a hash, so roughly even
    # a record without a readable id belongs to part 1 only
    assert [p.owns(None) for p in parts] == [True] + [False] * (n - 1)


def test_parse_part():
    assert parse_part("2/3") == Part(2, 3) and str(parse_part(" 2 / 3 ")) == "2/3"
    assert parse_part("1/1") == Part(1, 1) and Part(2, 3).suffix == "part-2-of-3"


@pytest.mark.parametrize("spec, why", [
    ("0/3", "numbered from 1 to 3"), ("4/3", "numbered from 1 to 3"), ("1/0", "at least 1"),
    ("3", "is not i/N"), ("a/b", "is not i/N"), ("-1/3", "is not i/N"), ("", "is not i/N"),
    ("1/3/4", "is not i/N"), ("1.5/3", "is not i/N"),
])
def test_bad_part_is_refused_with_the_reason(spec, why):
    with pytest.raises(PartError, match=why):
        parse_part(spec)


def test_cli_refuses_a_bad_part_and_recreate_with_a_part(tmp_path):
    from cmsearch.cli import cli

    cat = tmp_path / "c.jsonl"
    cat.write_text('{"id": "a", "title": "t"}\n')
    res = CliRunner().invoke(cli, ["ingest", str(cat), "--index", "x", "--dry-run", "--part", "4/3"])
    assert res.exit_code == 2 and "--part" in res.output and "numbered from 1 to 3" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["ingest", str(cat), "--index", "x", "--recreate", "--part", "1/3"])
    assert res.exit_code == 2 and "--recreate with --part 1/3" in res.output


def test_cli_dry_run_of_a_part(tmp_path):
    from cmsearch.cli import cli

    cat = _catalog(tmp_path / "c.jsonl")
    res = CliRunner().invoke(cli, ["ingest", str(cat), "--index", "x", "--dry-run", "--json", "--no-progress",
                                   "--accept-rejects", "--part", "2/3"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    c = d["counts"]
    assert d["part"] == "2/3" and c["other_parts"] > 0 and c["read"] == 44
    assert c["read"] == c["indexed"] + c["rejected"] + c["unchanged"] + c["other_parts"]
    assert c["indexed"] == sum(part_of(f"p{i}", 3) == 2 for i in range(40))
    # its rejects file is named by the part: the other parts' loads cannot clobber it
    assert not (tmp_path / "c.jsonl.rejects.jsonl").exists()
    assert c["rejected"] >= 1 and part_of("p3", 3) == 2         # the duplicate of p3 is part 2's
    assert (tmp_path / "c.jsonl.part-2-of-3.rejects.jsonl").exists()


def test_each_part_has_its_own_files():
    cat = Path("/data/c.jsonl")
    names = {default_rejects_path(cat, Part(i, 3)) for i in (1, 2, 3)} | {default_rejects_path(cat)}
    assert len(names) == 4 and default_rejects_path(cat, Part(2, 3)).name == "c.jsonl.part-2-of-3.rejects.jsonl"
    ckpts = {default_checkpoint_path(cat, "ix", Part(i, 3)) for i in (1, 2, 3)} | {default_checkpoint_path(cat, "ix")}
    assert len(ckpts) == 4
    assert default_checkpoint_path(cat, "ix", Part(3, 3)).name == "c.jsonl.ix.part-3-of-3.checkpoint.json"
    with pytest.raises(ValueError, match="--recreate with --part"):
        IngestOptions(index="ix", recreate=True, part=Part(1, 2))


# ---------------------------------------------------------------- dry runs of parts
def _catalog(path: Path) -> Path:
    lines = [json.dumps({"id": f"p{i}", "title": f"产品 {i}", "brand": "宜家"}, ensure_ascii=False) for i in range(40)]
    lines.insert(5, '{"id": "broken", "title": ')                    # malformed: no id, part 1
    lines.insert(9, json.dumps({"id": "no-title"}))                   # invalid, with an id: its own part
    lines.insert(20, json.dumps({"id": "p3", "title": "again"}))      # duplicate of p3: p3's part
    lines.insert(30, json.dumps({"title": "no id"}))                  # no id: part 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _dry(cat: Path, tmp_path: Path, part: Part | None):
    o = IngestOptions(index="ix", dry_run=True, progress=False, part=part,
                      rejects_path=tmp_path / f"rejects-{part.suffix if part else 'all'}.jsonl")
    return Ingestor(cat, o).run()


def test_parts_of_a_dry_run_add_up_to_the_whole(tmp_path):
    cat = _catalog(tmp_path / "c.jsonl")
    whole = _dry(cat, tmp_path, None)
    reports = [_dry(cat, tmp_path, Part(i, 3)) for i in (1, 2, 3)]
    for r in reports:
        c = r.counts
        assert c.read == whole.counts.read and c.balanced()
        assert c.other_parts == c.read - c.indexed - c.rejected - c.unchanged
    for key in ("indexed", "rejected"):
        assert sum(getattr(r.counts, key) for r in reports) == getattr(whole.counts, key)
    assert sum(r.counts.other_parts for r in reports) == 2 * whole.counts.read
    assert sum((r.counts.rejected_by for r in reports), Counter()) == whole.counts.rejected_by
    # every rejected line is in exactly one part's rejects file, the same entry as the single load's
    single = sorted((e["line"], e["reason"]) for e in read_rejects(tmp_path / "rejects-all.jsonl"))
    split = sorted((e["line"], e["reason"]) for i in (1, 2, 3)
                   for e in read_rejects(tmp_path / f"rejects-part-{i}-of-3.jsonl"))
    assert split == single and len(single) == 4
    # the id-less records are part 1's; the duplicate goes with p3
    p1 = {e["line"] for e in read_rejects(tmp_path / "rejects-part-1-of-3.jsonl")}
    assert {6, 31} <= p1
    dup_part = part_of("p3", 3)
    assert any("duplicate id" in e["reason"] for e in read_rejects(tmp_path / f"rejects-part-{dup_part}-of-3.jsonl"))


def test_summary_names_the_part_and_the_other_parts(tmp_path):
    cat = _catalog(tmp_path / "c.jsonl")
    r = _dry(cat, tmp_path, Part(2, 3))
    table = r.table()
    assert "part 2/3 of catalog" in table.splitlines()[0]
    assert "other parts' (skipped)" in table and "read = indexed + rejected + unchanged + other parts  ok" in table
    d = r.to_dict()
    assert d["part"] == "2/3" and d["counts"]["other_parts"] == r.counts.other_parts > 0
    whole = _dry(cat, tmp_path, None).table()
    assert "other parts" not in whole and "read = indexed + rejected + unchanged  " in whole


def test_the_lock_is_per_part(tmp_path):
    """A second load of the same part refuses (naming the running one); another part runs."""
    cat = _catalog(tmp_path / "c.jsonl")
    held = LoadLock(default_rejects_path(cat, Part(1, 2)), "the rejects file", {"what": "part 1 elsewhere"}).acquire()
    try:
        o = IngestOptions(index="ix", dry_run=True, progress=False, part=Part(1, 2))
        with pytest.raises(IngestError, match="another load is using .*part 1 elsewhere"):
            Ingestor(cat, o).run()
        o2 = IngestOptions(index="ix", dry_run=True, progress=False, part=Part(2, 2))
        assert Ingestor(cat, o2).run().counts.balanced()
    finally:
        held.release()


def test_a_batch_of_a_sparse_part_stays_bounded(tmp_path):
    """A part that owns few records of a long catalog does not gather the whole catalog in one batch."""
    from plugin_ingest.catalog import Catalog
    from plugin_ingest.enrich import Enricher
    from plugin_ingest.records import OTHER, read_batches
    from plugin_ingest.report import StageTimes
    from plugin_ingest.schema import Limits
    from plugin_ingest.survey import survey
    from plugin_ingest.target import load_tokenizer

    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "title": "t"}) + "\n" for i in range(3000)))
    cat = Catalog(path)
    sv = survey(cat)
    try:
        enricher = Enricher(load_tokenizer(sv, None, None, "ix", False), None, vector_identity="x")
        batches = list(read_batches(cat, sv, enricher, StageTimes(), limits=Limits(), batch_size=4,
                                    batch_images=128, ocr=False, part=Part(7, 1000)))
    finally:
        sv.close()
    assert sum(len(b.items) for b in batches) == 3000
    assert max(len(b.items) for b in batches) <= 64 * 4 + 8 * 4
    owned = [it for b in batches for it in b.items if it.status != OTHER]
    assert {it.pid for it in owned} == {f"q{i}" for i in range(3000) if part_of(f"q{i}", 1000) == 7}
    assert all(it.rec.data is None for b in batches for it in b.items if it.status == OTHER)


def test_a_record_goes_to_the_part_of_its_id_as_indexed(tmp_path):
    """The hash is of the id as the index's ``_id`` will be: stripped, an integer as its digits."""
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": " p1 ", "title": "a"}) + "\n" + json.dumps({"id": 7, "title": "b"}) + "\n")
    for n in (2, 3, 5):
        indexed = {i: _dry(path, tmp_path, Part(i, n)).counts.indexed for i in range(1, n + 1)}
        expected = Counter([part_of("p1", n), part_of("7", n)])
        assert indexed == {i: expected.get(i, 0) for i in range(1, n + 1)}
