"""The COEC click model on a log small enough to compute by hand, and the event format's validation.

The log: three searches for "red sofa" and three for "lamp", each showing three products.

    s1 Red Sofa   A B C   click B@2
    s2 red  sofa  A B C   click B@2 (twice: one vote), click A@1
    s3 red sofa   B A C   -
    s4 lamp       L1 L2 L3  click L3@3
    s5 lamp       L1 L2 L3  click L1@1, click L2 (no position: where s5 showed it, 2)
    s6 lamp       L2 L1 L3  -

Impressions per position: 6, 6, 6.  Counted clicks: position 1: A(s2), L1(s5) = 2;
position 2: B(s1), B(s2), L2(s5) = 3; position 3: L3(s4) = 1.  So ctr = 1/3, 1/2, 1/6.

    red sofa  A: shown at 1, 1, 2 -> expected 1/3 + 1/3 + 1/2 = 7/6, 1 click  -> COEC 6/7 -> grade 1
              B: shown at 2, 2, 1 -> expected 4/3, 2 clicks                  -> COEC 1.5 -> grade 2
              C: shown at 3, 3, 3 -> expected 1/2, no click                  -> grade 0
    lamp      L1: 7/6, 1 click -> 0.857 -> 1;  L2: 4/3, 1 click -> 0.75 -> 1
              L3: 1/2, 1 click -> COEC 2.0 -> grade 3 (one click at position 3 says more than one at 1)
"""
from __future__ import annotations

import json

import pytest

from evaluation.click_model import ClickModelConfig, judgments_from_events, normalize_query
from evaluation.events import Event, EventError, read_events, write_events_file
from evaluation.judgments import query_id_for

T = "2025-03-01T10:00:00Z"


def search(qid, text, hits, **kw):
    return Event.from_dict({"action_name": "search", "query_id": qid, "user_query": text,
                            "query_response_hit_ids": hits, "session_id": "s", "timestamp": T, **kw})


def click(qid, doc, pos=None, action="click", **kw):
    attrs = {"object": {"object_id": doc, "object_id_field": "id"}}
    if pos is not None:
        attrs["position"] = {"ordinal": pos}
    return Event.from_dict({"action_name": action, "query_id": qid, "session_id": "s", "timestamp": T,
                            "event_attributes": attrs, **kw})


def log():
    return [
        search("s1", "Red Sofa", ["A", "B", "C"]), click("s1", "B", 2),
        search("s2", "red  sofa", ["A", "B", "C"]), click("s2", "B", 2), click("s2", "B", 2), click("s2", "A", 1),
        search("s3", "red sofa", ["B", "A", "C"]),
        search("s4", "lamp", ["L1", "L2", "L3"]), click("s4", "L3", 3),
        search("s5", "lamp", ["L1", "L2", "L3"]), click("s5", "L1", 1), click("s5", "L2"),
        search("s6", "lamp", ["L2", "L1", "L3"]),
    ]


def _pairs(report):
    return {(p.query, p.doc): p for p in report.pairs}


def test_coec_grades_match_the_hand_computation():
    js, report = judgments_from_events(log())
    assert report.position_ctr == pytest.approx({1: 1 / 3, 2: 1 / 2, 3: 1 / 6})
    pairs = _pairs(report)
    assert pairs[("red sofa", "A")].expected == pytest.approx(7 / 6, abs=1e-6)
    assert pairs[("red sofa", "A")].coec == pytest.approx(6 / 7, abs=1e-6)
    assert pairs[("red sofa", "B")].clicks == 2 and pairs[("red sofa", "B")].coec == pytest.approx(1.5)
    assert pairs[("lamp", "L3")].coec == pytest.approx(2.0)
    grades = {q.text: dict(q.grades) for q in js}
    assert grades == {"Red Sofa": {"A": 1, "B": 2, "C": 0}, "lamp": {"L1": 1, "L2": 1, "L3": 3}}
    assert {q.id for q in js} == {query_id_for("red sofa"), query_id_for("lamp")}
    assert report.searches == 6 and report.clicks == 7 and report.impressions == 18


def test_min_impressions_withholds_judgments():
    js, report = judgments_from_events(log(), ClickModelConfig(min_impressions=4))
    assert len(js) == 0
    assert all(p.grade is None for p in report.pairs) and len(report.pairs) == 6


def test_max_rank_drops_lower_positions():
    js, report = judgments_from_events(log(), ClickModelConfig(max_rank=2))
    assert report.clicks_beyond_max_rank == 1            # L3@3
    assert 3 not in report.position_ctr
    assert "L3" not in dict(next(q for q in js if q.text == "lamp").grades)
    # without position 3: ctr1 = 2/6, ctr2 = 3/6, so A keeps 7/6 expected
    assert _pairs(report)[("red sofa", "A")].expected == pytest.approx(7 / 6, abs=1e-6)


def test_grade_cuts_are_configurable():
    js, _ = judgments_from_events(log(), ClickModelConfig(grade_cuts=(0.8,)))
    grades = {q.text: dict(q.grades) for q in js}
    assert grades["Red Sofa"] == {"A": 2, "B": 2, "C": 0}     # 0.857 and 1.5 both reach 0.8
    assert grades["lamp"] == {"L1": 2, "L2": 1, "L3": 2}      # 0.75 does not


def test_orphans_unknown_positions_photo_searches_and_explicit_impressions():
    events = log() + [
        click("nope", "X", 1),                                        # no such search, no text: orphan
        click("s3", "Q"),                                             # s3 never showed Q, no position: dropped
        click("s9", "L1", 1, user_query="LAMP"),                      # search record missing, text on the click
        search("p1", "", ["A"]), click("p1", "A", 1),                 # photo search: skipped with its click
        click("s1", "Z", 5, action="impression"),                     # explicit impression, position 5
        click("s1", "A", 1, action="add_to_cart"),                    # other actions are ignored
    ]
    js, report = judgments_from_events(events)
    assert report.orphan_events == 1 and report.clicks_dropped == 1
    assert report.searches_without_text == 1
    z = _pairs(report)[("red sofa", "Z")]
    assert (z.impressions, z.clicks, z.grade) == (1, 0, None)
    l1 = _pairs(report)[("lamp", "L1")]
    assert (l1.impressions, l1.clicks) == (4, 2)
    assert "1 without text skipped" in report.summary()


def test_normalize_query():
    assert normalize_query("  Red\u3000SOFA ") == "red sofa"       # ideographic space, NFKC
    assert normalize_query("ＡＨＣ 黄金水") == "ahc 黄金水"          # full-width letters


def test_event_round_trip_and_file(tmp_path):
    events = log()
    path = tmp_path / "events.jsonl"
    assert write_events_file(events, path) == len(events)
    back = read_events(path)
    assert back == events
    first = json.loads(path.read_text().splitlines()[1])
    assert first["event_attributes"] == {"object": {"object_id": "B", "object_id_field": "id"},
                                         "position": {"ordinal": 2}}
    assert first["timestamp"] == T


@pytest.mark.parametrize("line, reason", [
    ('{"action_name": "click", "query_id": "q", "session_id": "s", "timestamp": "2025-03-01T10:00:00Z"}',
     "needs 'event_attributes.object.object_id'"),
    ('{"action_name": "search", "session_id": "s", "timestamp": "2025-03-01T10:00:00Z"}', "needs 'query_id'"),
    ('{"action_name": "search", "query_id": "q", "timestamp": "2025-03-01T10:00:00Z"}', "client_id"),
    ('{"action_name": "search", "query_id": "q", "session_id": "s", "timestamp": "2025-03-01T10:00:00"}',
     "no time zone"),
    ('{"action_name": "click", "query_id": "q", "session_id": "s", "timestamp": "2025-03-01T10:00:00Z", '
     '"event_attributes": {"object": {"object_id": "p"}, "position": {"ordinal": 0}}}', ">= 1"),
    ('{"action_name": "search", "query_id": "q", "session_id": "s", "timestamp": "x", "colour": 1}', "unknown key"),
    ('{"action_name": "search"', "not valid JSON"),
])
def test_bad_events_name_the_line(tmp_path, line, reason):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(search("ok", "a", []).to_dict()) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(EventError, match=reason) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}:3:")
