"""Judgment files: TREC qrels + query files, SRW JSON, errors that name the line, round trips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.judgments import (JudgedQuery, JudgmentError, JudgmentSet, load_judgments, load_trec, query_id_for,
                                  read_qrels, read_queries, read_srw, write_srw, write_trec)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_trec_qrels_and_jsonl_queries_with_an_image(tmp_path):
    (tmp_path / "photos").mkdir()
    _write(tmp_path / "qrels.txt", "# comment\nq1 0 p1 2\nq1 0 p2 0\n\nq2 0 p9 1\n")
    _write(tmp_path / "queries.jsonl",
           '{"id": "q1", "text": "红色 沙发"}\n{"id": "q2", "image": "photos/room.jpg"}\n{"id": "q3", "text": "lamp"}\n')
    js = load_judgments(tmp_path)
    assert js.name == tmp_path.name
    assert [q.id for q in js] == ["q1", "q2", "q3"]
    q1, q2, q3 = js.queries
    assert q1.text == "红色 沙发" and q1.image is None and dict(q1.grades) == {"p1": 2, "p2": 0}
    assert q1.relevant == {"p1"}
    assert q2.text is None and q2.image == tmp_path / "photos" / "room.jpg" and q2.label == "[image] room.jpg"
    assert dict(q3.grades) == {}                       # kept, without judgments
    assert [q.id for q in js.judged()] == ["q1", "q2"]


def test_tsv_queries(tmp_path):
    _write(tmp_path / "q.tsv", "a\tblue chair\nb\t\tpics/b.png\n")
    rows = read_queries(tmp_path / "q.tsv")
    assert rows == [("a", "blue chair", None), ("b", None, tmp_path / "pics/b.png")]


@pytest.mark.parametrize("text, line, reason", [
    ("q1 0 p1 1\nq1 0 p2\n", 2, "expected 4 columns"),
    ("q1 0 p1 high\n", 1, "not a number"),
    ("q1 0 p1 1\nq1 0 p1 2\n", 2, "already graded 1 on line 1"),
    ("\n\nq1 0 p1 nan\n", 3, "not a finite number"),
])
def test_qrels_errors_name_the_line(tmp_path, text, line, reason):
    path = _write(tmp_path / "qrels.txt", text)
    with pytest.raises(JudgmentError, match=reason) as err:
        read_qrels(path)
    assert err.value.where == f"{path}:{line}"


def test_same_pair_twice_with_the_same_grade_is_fine(tmp_path):
    assert read_qrels(_write(tmp_path / "r", "q 0 d 1\nq 0 d 1\n")) == {"q": {"d": 1}}


@pytest.mark.parametrize("text, line, reason", [
    ('{"id": "q1", "text": "a"}\n{"id": "q1", "text": "b"}\n', 2, "already defined on line 1"),
    ('{"id": "q1"}\n', 1, "neither text nor image"),
    ('{"id": "q 1", "text": "a"}\n', 1, "contains spaces"),
    ('{"id": "q1", "text": "a", "lang": "en"}\n', 1, "unknown key"),
    ('{"id": "q1", "text": "a"\n', 1, "not valid JSON"),
    ('["q1", "a"]\n', 1, "JSON object"),
])
def test_query_file_errors_name_the_line(tmp_path, text, line, reason):
    path = _write(tmp_path / "queries.jsonl", text)
    with pytest.raises(JudgmentError, match=reason) as err:
        read_queries(path)
    assert err.value.where == f"{path}:{line}"


def test_qrels_query_missing_from_query_file(tmp_path):
    _write(tmp_path / "qrels.txt", "q1 0 p1 1\nq7 0 p1 1\n")
    _write(tmp_path / "queries.jsonl", '{"id": "q1", "text": "a"}\n')
    with pytest.raises(JudgmentError, match=r"not in .*queries.jsonl: \['q7'\]"):
        load_trec(tmp_path / "qrels.txt", tmp_path / "queries.jsonl")


def test_qrels_file_without_query_file(tmp_path):
    _write(tmp_path / "my.qrels", "q1 0 p1 1\n")
    with pytest.raises(JudgmentError, match="no query file"):
        load_judgments(tmp_path / "my.qrels")


def test_srw_import_json(tmp_path):
    body = {"name": "Imported", "type": "IMPORT_JUDGMENT", "judgmentRatings": [
        {"query": "red dress", "ratings": [{"docId": "B1", "rating": "0.000"}, {"docId": "B2", "rating": 3},
                                           {"docId": "B3", "rating": "0.5"}]},
        {"query": "lamp", "image": "img/lamp.jpg", "id": "L1", "ratings": [{"docId": "B9", "rating": 1}]},
    ]}
    path = _write(tmp_path / "j.json", json.dumps(body))
    js = load_judgments(path)
    assert js.name == "Imported"
    dress, lamp = js.queries
    assert dress.id == query_id_for("red dress") and dress.text == "red dress"
    assert dict(dress.grades) == {"B1": 0, "B2": 3, "B3": 0.5}
    assert lamp.id == "L1" and lamp.image == tmp_path / "img" / "lamp.jpg"


@pytest.mark.parametrize("entries, where, reason", [
    ([{"query": "a", "ratings": [{"docId": "d", "rating": "high"}]}], "judgmentRatings[0].ratings[0]", "not a number"),
    ([{"query": "a", "ratings": [{"docId": "d"}]}], "judgmentRatings[0].ratings[0]", "'docId' and 'rating'"),
    ([{"query": "a", "ratings": []}, {"query": "a", "ratings": []}], "judgmentRatings[1]", "already listed"),
    ([{"ratings": []}], "judgmentRatings[0]", "neither query text nor image"),
    ([{"query": "a", "ratings": {"d": 1}}], "judgmentRatings[0]", "must be a list"),
])
def test_srw_errors_name_the_entry(tmp_path, entries, where, reason):
    path = _write(tmp_path / "j.json", json.dumps({"judgmentRatings": entries}))
    with pytest.raises(JudgmentError, match=reason) as err:
        read_srw(path)
    assert err.value.where == f"{path}: {where}"


def test_srw_bad_json_names_the_line(tmp_path):
    path = _write(tmp_path / "j.json", '{\n "judgmentRatings": [\n  {"query": "a",}\n ]\n}')
    with pytest.raises(JudgmentError) as err:
        read_srw(path)
    assert err.value.where == f"{path}:3"


def test_trec_round_trip_keeps_images_relative(tmp_path):
    out = tmp_path / "set"
    js = JudgmentSet("s", (JudgedQuery("q1", "sofa", None, {"p1": 3, "p2": 1}),
                           JudgedQuery("q2", None, out / "img" / "r.jpg", {"p3": 1}),
                           JudgedQuery("q3", "chair", tmp_path / "elsewhere.jpg", {"p4": 2})))
    write_trec(js, out)
    assert (out / "qrels.txt").read_text().splitlines() == ["q1 0 p1 3", "q1 0 p2 1", "q2 0 p3 1", "q3 0 p4 2"]
    assert json.loads((out / "queries.jsonl").read_text().splitlines()[1]) == {"id": "q2", "image": "img/r.jpg"}
    back = load_judgments(out)
    assert [(q.id, q.text, q.image, dict(q.grades)) for q in back] == \
           [(q.id, q.text, q.image.resolve() if q.image else None, dict(q.grades)) for q in js]


def test_srw_writer_leaves_out_image_queries(tmp_path):
    js = JudgmentSet("s", (JudgedQuery("q1", "sofa", None, {"p1": 3}), JudgedQuery("q2", None, "a.jpg", {"p3": 1})))
    assert write_srw(js, tmp_path / "s.json") == 1
    back = read_srw(tmp_path / "s.json")
    assert [(q.text, dict(q.grades)) for q in back] == [("sofa", {"p1": 3})]


def test_split_is_seeded_disjoint_and_keeps_both_sides():
    js = JudgmentSet("s", tuple(JudgedQuery(f"q{i}", f"t{i}", None, {"d": 1}) for i in range(10)))
    train, held = js.split(0.3, seed=1)
    assert len(train) == 7 and len(held) == 3
    assert not {q.id for q in train} & {q.id for q in held}
    assert [q.id for q in js.split(0.3, seed=1)[1]] == [q.id for q in held]
    assert [q.id for q in js.split(0.3, seed=2)[1]] != [q.id for q in held]
    two = js.head(2)
    assert [len(p) for p in two.split(0.01)] == [1, 1]


def test_duplicate_query_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        JudgmentSet("s", (JudgedQuery("q", "a"), JudgedQuery("q", "b")))
