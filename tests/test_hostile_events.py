"""Click events hold personal data: what reaches the events index, and how long it stays.

Unit tests for the scrubber and the period parser; then, on the real node, the raw index is
searched and every document fetched to show that no e-mail and no IP address got in, and a
purge deletes the old events and nothing else.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from evaluation import events as ev
from evaluation.click_model import judgments_from_events
from evaluation.event_privacy import SECRET_ENV, EventScrubber, PrivacyError, is_pseudonym
from evaluation.events import Event, parse_period, purge_events, scan_events, write_events

SECRET = "4f1c8a0e9b7d6c5a4f3e2d1c0b9a8f7e"
EMAIL = "alice.smith@example.com"
IP4, IP6 = "198.51.100.23", "2001:db8::17"
T = "2025-03-01T10:00:00Z"


def _personal_log() -> list[Event]:
    """A search and two clicks by a shopper known by e-mail, with her IP address in several places."""
    base = {"query_id": "q1", "user_id": EMAIL, "client_id": IP4, "timestamp": T, "application": "web"}
    return [
        Event.from_dict({**base, "action_name": "search", "user_query": "red sofa",
                         "query_response_hit_ids": ["A", "B", "C"],
                         "message": f"search from {IP4} by {EMAIL}"}),
        Event.from_dict({**base, "action_name": "click", "timestamp": "2025-03-01T10:00:05Z",
                         "event_attributes": {"object": {"object_id": "B"}, "position": {"ordinal": 2},
                                              "ip": IP4, "browser": "firefox",
                                              "request": {"X-Forwarded-For": IP6, "peer": f"[{IP6}]:443",
                                                          "email": EMAIL, "page": "/s?q=sofa"}}}),
        Event.from_dict({**base, "action_name": "click", "timestamp": "2025-03-01T10:00:09Z", "client_id": None,
                         "event_attributes": {"object": {"object_id": "C"}, "position": {"ordinal": 3}}}),
    ]


# --- unit: the scrubber -------------------------------------------------------------------------
def test_a_user_id_becomes_a_keyed_pseudonym():
    s = EventScrubber(SECRET)
    p = s.pseudonym(EMAIL)
    assert is_pseudonym(p) and EMAIL not in p
    assert EventScrubber(SECRET).pseudonym(EMAIL) == p                   # stable across loads
    assert EventScrubber(SECRET + "x").pseudonym(EMAIL) != p             # keyed: another secret, another id
    import hashlib
    assert hashlib.sha256(EMAIL.encode()).hexdigest()[:32] not in p      # not a plain (guessable) hash
    assert s.pseudonym(p) == p                                           # a pseudonym is not hashed twice


def test_scrubbing_removes_ip_addresses_and_raw_ids():
    s = EventScrubber(SECRET)
    out = [s.scrub(e) for e in _personal_log()]
    text = json.dumps([e.to_dict() for e in out])
    assert EMAIL not in text and IP4 not in text and IP6 not in text
    assert out[0].user_id == s.pseudonym(EMAIL) and out[0].client_id is None      # an IP is no client id
    assert out[0].message == "search from [ip] by [email]"
    assert out[1].extra_attributes == {"browser": "firefox",
                                       "request": {"email": s.pseudonym(EMAIL), "page": "/s?q=sofa"}}
    assert out[0].user_query == "red sofa" and out[1].object_id == "B" and out[1].position == 2
    assert s.counts.ids_pseudonymized == 4 and s.counts.ip_addresses_removed == 5


def test_without_a_secret_user_ids_are_dropped_with_one_warning(caplog):
    s = EventScrubber.from_environment(environ={})
    assert not s.has_secret
    with caplog.at_level(logging.WARNING, logger="evaluation.event_privacy"):
        out = [s.scrub(e) for e in _personal_log() * 5]
    assert all(e.user_id is None for e in out)
    assert EMAIL not in json.dumps([e.to_dict() for e in out])
    assert s.counts.ids_dropped == 20                        # 15 user ids + 5 e-mails in attributes
    warnings = [r for r in caplog.records if SECRET_ENV in r.getMessage()]
    assert len(warnings) == 1


def test_a_short_or_unreadable_secret_is_refused_without_showing_it(tmp_path):
    with pytest.raises(PrivacyError, match="too short") as info:
        EventScrubber.from_environment(environ={SECRET_ENV: "hunter2"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(PrivacyError, match="cannot read"):
        EventScrubber.from_environment(tmp_path / "missing")
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    assert EventScrubber.from_environment(f).pseudonym(EMAIL) == EventScrubber(SECRET).pseudonym(EMAIL)


@pytest.mark.parametrize("text, want", [("90d", timedelta(days=90)), ("12w", timedelta(weeks=12)),
                                        ("36h", timedelta(hours=36)), (" 7D ", timedelta(days=7))])
def test_parse_period(text, want):
    assert parse_period(text) == want


@pytest.mark.parametrize("text", ["90", "0d", "-3d", "3m", "1.5d", "d", ""])
def test_bad_periods_are_refused(text):
    with pytest.raises(ValueError, match="e.g. 90d"):
        parse_period(text)


# --- on the real node ---------------------------------------------------------------------------
def _all_sources(os_client, index) -> list[dict]:
    hits = os_client.search(index=index, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    got = [os_client.get(index=index, id=h["_id"])["_source"] for h in hits]   # GET each document too
    assert got == [h["_source"] for h in hits]
    return got


@pytest.mark.engine
def test_a_raw_user_id_and_ip_never_reach_the_index(os_client, fresh_index):
    index = fresh_index("events")
    scrubber = EventScrubber(SECRET)
    assert write_events(os_client, _personal_log(), index, scrubber) == 3
    dump = json.dumps(_all_sources(os_client, index))
    assert EMAIL not in dump and IP4 not in dump and IP6 not in dump
    for raw in (EMAIL, IP4, IP6, "alice.smith"):
        found = os_client.search(index=index, body={"query": {"query_string": {
            "query": json.dumps(raw), "fields": ["*"], "lenient": True}}})["hits"]["total"]["value"]
        assert found == 0, raw
    assert os_client.count(index=index, body={"query": {"term": {ev.USER_ID: EMAIL}}})["count"] == 0
    pseudo = scrubber.pseudonym(EMAIL)
    assert os_client.count(index=index, body={"query": {"term": {ev.USER_ID: pseudo}}})["count"] == 3


@pytest.mark.engine
def test_without_a_secret_the_events_are_stored_without_user_ids(os_client, fresh_index, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    index = fresh_index("events")
    assert write_events(os_client, _personal_log(), index) == 3          # the default scrubber: no secret
    dump = json.dumps(_all_sources(os_client, index))
    assert EMAIL not in dump and IP4 not in dump and ev.USER_ID not in dump
    back = list(scan_events(os_client, index))                           # read back although anonymous
    assert [e.action_name for e in sorted(back, key=lambda e: e.timestamp)] == ["search", "click", "click"]


@pytest.mark.engine
def test_the_click_model_reads_pseudonymous_events_like_raw_ones(os_client, fresh_index):
    from tests.test_click_model import log

    index = fresh_index("events")
    raw = [Event.from_dict({**e.to_dict(), "user_id": f"user{i % 3}@example.com"}) for i, e in enumerate(log())]
    write_events(os_client, raw, index, EventScrubber(SECRET))
    back = sorted(scan_events(os_client, index), key=lambda e: (e.query_id, e.action_name != "search"))
    assert all(is_pseudonym(e.user_id) for e in back)
    assert len({e.user_id for e in back}) == 3
    from_index, report = judgments_from_events(back)
    from_raw, _ = judgments_from_events(raw)
    assert {q.id: dict(q.grades) for q in from_index} == {q.id: dict(q.grades) for q in from_raw}
    assert report.clicks == 7


def _dated(n_days: float, qid: str) -> Event:
    ts = datetime.now(timezone.utc) - timedelta(days=n_days)
    return Event(action_name="search", timestamp=ts, query_id=qid, user_query="x", session_id="s")


@pytest.mark.engine
def test_purge_deletes_what_is_older_and_nothing_else(os_client, fresh_index):
    index, other = fresh_index("events"), fresh_index("events")
    ages = {"old-400": 400, "old-91": 91, "old-90.01": 90.01, "new-89.99": 89.99, "new-30": 30, "new-0": 0.001}
    write_events(os_client, [_dated(d, q) for q, d in ages.items()], index, EventScrubber(None))
    write_events(os_client, [_dated(d, q) for q, d in ages.items()], other, EventScrubber(None))
    # a document from another writer without a timestamp is not "older than" anything
    os_client.index(index=index, body={"action_name": "note", "session_id": "s"}, refresh=True)

    n, cutoff = purge_events(os_client, index, timedelta(days=90), dry_run=True)
    assert n == 3 and os_client.count(index=index)["count"] == 7          # a dry run deletes nothing
    n, cutoff = purge_events(os_client, index, timedelta(days=90))
    assert n == 3
    left = {h["_source"].get(ev.QUERY_ID) for h in
            os_client.search(index=index, body={"size": 100})["hits"]["hits"]}
    assert left == {"new-89.99", "new-30", "new-0", None}
    assert os_client.count(index=other)["count"] == 6                     # another index is untouched
    assert purge_events(os_client, index, timedelta(days=90))[0] == 0     # a second run finds nothing


@pytest.mark.engine
def test_cli_load_pseudonymizes_and_purge_deletes(os_client, fresh_index, tmp_path, local_engine):
    from cmsearch.cli import cli
    from evaluation.events import write_events_file

    index = fresh_index("events")
    log_file = tmp_path / "log.jsonl"
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    recent = [replace(e, timestamp=yesterday) for e in _personal_log()]
    write_events_file(recent + [_dated(120, "ancient")], log_file)
    url = ["--url", local_engine.url()]
    res = CliRunner().invoke(cli, ["events", "load", str(log_file), "--index", index, *url],
                                             env={SECRET_ENV: SECRET})
    assert res.exit_code == 0, res.output + res.stderr
    assert f"added 4 events to {index}" in res.output and "4 user id(s) stored as keyed pseudonyms" in res.output
    assert SECRET not in res.output + res.stderr
    assert EMAIL not in json.dumps(_all_sources(os_client, index))

    res = CliRunner().invoke(cli, ["events", "load", str(log_file), "--index", index, *url],
                                             env={SECRET_ENV: ""})
    assert res.exit_code == 0 and "4 user id(s) were not stored" in res.stderr

    res = CliRunner().invoke(cli, ["events", "purge", "--older-than", "90d", "--index", index, *url])
    assert res.exit_code == 0, res.output + res.stderr
    assert "deleted 2 events older than 90d" in res.output
    assert os_client.count(index=index)["count"] == 6

    res = CliRunner().invoke(cli, ["events", "purge", "--older-than", "3 months", "--index", index])
    assert res.exit_code == 2 and "--older-than" in res.stderr
    res = CliRunner().invoke(cli, ["events", "purge", "--older-than", "90d",
                                                   "--index", index + "-none", *url])
    assert res.exit_code == 1 and "does not exist" in res.stderr and "Traceback" not in res.stderr
