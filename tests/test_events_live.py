"""The events index on the real node: created strict, written, scanned back, turned into judgments."""
from __future__ import annotations

import pytest
from opensearchpy.exceptions import RequestError

from evaluation import events as ev
from evaluation.click_model import judgments_from_events
from evaluation.events import Event, scan_events, write_events
from evaluation.index_util import IndexMismatch, ensure_index

pytestmark = pytest.mark.engine


def _log():
    from tests.test_click_model import log

    return log()


def test_events_round_trip_through_the_index(os_client, fresh_index):
    index = fresh_index("events")
    events = _log()
    assert write_events(os_client, events, index) == len(events)
    back = list(scan_events(os_client, index))
    key = lambda e: (e.query_id, e.action_name, e.object_id or "", e.position or 0)  # noqa: E731
    assert sorted(back, key=key) == sorted(events, key=key)
    # the index's answer and the file's answer are the same judgments
    from_index, _ = judgments_from_events(sorted(back, key=lambda e: (e.query_id, e.action_name != "search")))
    from_list, _ = judgments_from_events(events)
    assert {q.id: dict(q.grades) for q in from_index} == {q.id: dict(q.grades) for q in from_list}


def test_events_index_mapping_and_queries(os_client, fresh_index):
    index = fresh_index("events")
    write_events(os_client, _log(), index)
    props = os_client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert props[ev.ACTION_NAME]["type"] == "keyword" and props[ev.TIMESTAMP]["type"] == "date"
    assert props[ev.EVENT_ATTRIBUTES]["properties"]["position"]["properties"]["ordinal"]["type"] == "integer"
    clicks = os_client.count(index=index, body={"query": {"term": {ev.ACTION_NAME: "click"}}})["count"]
    assert clicks == 7
    at_two = os_client.count(index=index, body={"query": {"term": {ev.POSITION: 2}}})["count"]
    assert at_two == 3
    by_text = os_client.count(index=index, body={"query": {"match": {ev.USER_QUERY + ".text": "sofa"}}})["count"]
    assert by_text == 3


def test_the_index_refuses_unknown_top_level_fields(os_client, fresh_index):
    index = fresh_index("events")
    ensure_index(os_client, index, ev.index_body())
    with pytest.raises(RequestError, match="strict"):
        os_client.index(index=index, body={"action_name": "click", "colour": "red"}, refresh=True)
    # extra event attributes are kept in the source but not indexed
    os_client.index(index=index, refresh=True, body={
        "action_name": "add_to_cart", "session_id": "s", "timestamp": "2025-03-01T10:00:00Z", "query_id": "q",
        "event_attributes": {"object": {"object_id": "p1"}, "cart": {"size": 3}}})
    (hit,) = os_client.search(index=index, body={"query": {"term": {ev.OBJECT_ID: "p1"}}})["hits"]["hits"]
    assert Event.from_dict(hit["_source"]).extra_attributes == {"cart": {"size": 3}}


def test_time_and_application_filters(os_client, fresh_index):
    index = fresh_index("events")
    early = Event.from_dict({"action_name": "search", "query_id": "a", "user_query": "x", "session_id": "s",
                             "application": "web", "timestamp": "2025-01-01T00:00:00Z"})
    late = Event.from_dict({"action_name": "search", "query_id": "b", "user_query": "x", "session_id": "s",
                            "application": "app", "timestamp": "2025-06-01T00:00:00+08:00"})
    write_events(os_client, [early, late], index)
    assert [e.query_id for e in scan_events(os_client, index, since="2025-03-01")] == ["b"]
    assert [e.query_id for e in scan_events(os_client, index, until="2025-03-01")] == ["a"]
    assert [e.query_id for e in scan_events(os_client, index, application="web")] == ["a"]


def test_an_existing_index_with_another_mapping_is_refused(os_client, fresh_index):
    index = fresh_index("events")
    os_client.indices.create(index=index, body={"mappings": {"properties": {"timestamp": {"type": "keyword"}}}})
    with pytest.raises(IndexMismatch, match="timestamp"):
        write_events(os_client, _log(), index)


def test_cli_load_events_then_judgments_from_events(os_client, fresh_index, tmp_path, local_engine):
    from click.testing import CliRunner

    from cmsearch.cmd_eval import judgments
    from cmsearch.cmd_events import events as events_group
    from evaluation.events import write_events_file
    from evaluation.judgments import load_judgments, read_srw

    index = fresh_index("events")
    log_file = tmp_path / "log.jsonl"
    write_events_file(_log(), log_file)
    url = ["--url", local_engine.url()]
    res = CliRunner().invoke(events_group, ["load", str(log_file), "--index", index, *url], catch_exceptions=False)
    assert res.exit_code == 0 and f"added 13 events to {index}" in res.output
    out = tmp_path / "clicks"
    res = CliRunner().invoke(judgments, ["from-events", "--events-index", index, "--out", str(out),
                                         "--srw", str(tmp_path / "srw.json"), *url], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "6 judgments from 6 query-product pairs" in res.output
    js = load_judgments(out)
    assert {q.text.lower(): dict(q.grades) for q in js} == {"red sofa": {"A": 1, "B": 2, "C": 0},
                                                            "lamp": {"L1": 1, "L2": 1, "L3": 3}}
    assert {q.text.lower() for q in read_srw(tmp_path / "srw.json")} == {"red sofa", "lamp"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"action_name": "click"}\n')
    res = CliRunner().invoke(events_group, ["load", str(bad), "--index", index, *url])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output
