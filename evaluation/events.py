"""User-behaviour events: the documented format, its index, reading and writing.

The format follows OpenSearch User Behavior Insights (UBI) so logs from a UBI-instrumented shop
can be used as they are; the differences are that searches and events share one index (one
index pattern in Dashboards) and that a search lists the ids it showed.

One JSON object per event (a line of a ``.jsonl`` file, or a document of the events index)::

    {"action_name": "search", "query_id": "9c1e..", "user_query": "红色 沙发",
     "query_response_hit_ids": ["p17", "p3", "p9"],
     "client_id": "c-42", "session_id": "s-7", "user_id": "u-1", "application": "shop-web",
     "timestamp": "2025-03-01T10:15:00Z"}
    {"action_name": "click", "query_id": "9c1e..", "client_id": "c-42", "session_id": "s-7",
     "timestamp": "2025-03-01T10:15:09Z",
     "event_attributes": {"object": {"object_id": "p3", "object_id_field": "id"},
                          "position": {"ordinal": 2}}}

- ``action_name``: ``search`` (one per result page shown), ``impression`` (a result was shown;
  optional, a search's ``query_response_hit_ids`` already says what was shown), ``click``, or any
  other name (``add_to_cart`` ...), which is stored but not used by the click model.
- ``query_id``: unique per search; impressions and clicks carry the id of the search they
  belong to.  Required for search, impression and click.
- ``user_query``: the text searched (on ``search``; empty for a photo-only search; optional
  elsewhere, taken from the search with the same ``query_id`` when absent).
- ``query_response_hit_ids``: on ``search``, the product ids shown, in order; position 1 is the
  first one.
- ``event_attributes.object.object_id``: the product acted on (required on click/impression);
  ``object_id_field`` names the product field the id comes from (``id``).
- ``event_attributes.position.ordinal``: 1-based position of that product in the results.
- ``client_id`` / ``session_id`` / ``user_id``: who, at three levels of stability; at least one
  in a log that is loaded.
- ``timestamp``: ISO 8601 with a time zone (``Z`` or ``+08:00``).

What reaches the index is less than what a log may hold (:mod:`.event_privacy`): ``user_id`` is
stored as a keyed pseudonym under the operator's secret (``CMSEARCH_EVENTS_SECRET``) or, without
one, not at all; IP addresses are never stored.  Events are kept until purged
(:func:`purge_events`, ``cmsearch events purge --older-than 90d``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from opensearchpy import OpenSearch, helpers

from .event_privacy import EventScrubber
from .index_util import bulk_write, ensure_index

__all__ = ["EventError", "Event", "SEARCH", "IMPRESSION", "CLICK", "DEFAULT_INDEX", "index_body", "read_events",
           "write_events_file", "write_events", "scan_events", "parse_timestamp", "parse_period", "purge_events"]

SEARCH, IMPRESSION, CLICK = "search", "impression", "click"
DEFAULT_INDEX = "cmsearch-events"

# field names (UBI's)
ACTION_NAME = "action_name"
QUERY_ID = "query_id"
USER_QUERY = "user_query"
HIT_IDS = "query_response_hit_ids"
CLIENT_ID = "client_id"
SESSION_ID = "session_id"
USER_ID = "user_id"
APPLICATION = "application"
TIMESTAMP = "timestamp"
MESSAGE = "message"
EVENT_ATTRIBUTES = "event_attributes"
OBJECT_ID = "event_attributes.object.object_id"
OBJECT_ID_FIELD = "event_attributes.object.object_id_field"
POSITION = "event_attributes.position.ordinal"

_TOP_KEYS = {ACTION_NAME, QUERY_ID, USER_QUERY, HIT_IDS, CLIENT_ID, SESSION_ID, USER_ID, APPLICATION, TIMESTAMP,
             MESSAGE, EVENT_ATTRIBUTES}


class EventError(ValueError):
    """An event is malformed; the message names where (file line or document id) and why."""


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from ISO 8601 text (``Z`` allowed) or epoch milliseconds; naive times are refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be ISO 8601 text or epoch milliseconds, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone (add Z or +hh:mm)")
    return ts


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    v = data.get(key)
    if v is None:
        return None
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"'{key}' must be a string, got {type(v).__name__}")
    v = str(v).strip()
    return v or None


@dataclass(frozen=True)
class Event:
    """One search, impression, click or other action."""

    action_name: str
    timestamp: datetime
    query_id: str | None = None
    user_query: str | None = None
    hit_ids: tuple[str, ...] = ()
    object_id: str | None = None
    object_id_field: str | None = None
    position: int | None = None
    client_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    application: str | None = None
    message: str | None = None
    extra_attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.action_name, str) or not self.action_name.strip():
            raise ValueError("'action_name' is required")
        object.__setattr__(self, "action_name", self.action_name.strip().lower())
        if not isinstance(self.timestamp, datetime) or self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be a datetime with a time zone")
        a = self.action_name
        if a in (SEARCH, IMPRESSION, CLICK) and not self.query_id:
            raise ValueError(f"a {a} event needs 'query_id'")
        if a in (IMPRESSION, CLICK) and not self.object_id:
            raise ValueError(f"a {a} event needs '{OBJECT_ID}'")
        if a == IMPRESSION and self.position is None:
            raise ValueError(f"an impression event needs '{POSITION}'")
        if self.position is not None and (isinstance(self.position, bool) or not isinstance(self.position, int)
                                          or self.position < 1):
            raise ValueError(f"'{POSITION}' must be an integer >= 1 (1 = first result), got {self.position!r}")
        hits = tuple(self.hit_ids)
        if any(not isinstance(h, str) or not h for h in hits):
            raise ValueError(f"'{HIT_IDS}' must be a list of non-empty strings")
        object.__setattr__(self, "hit_ids", hits)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, require_actor: bool = True) -> "Event":
        """An event from its JSON form.  ``require_actor``: a log must say who acted; an event read
        back from the index may have lost its user id (stored only with a secret set)."""
        if not isinstance(data, Mapping):
            raise ValueError("an event is a JSON object")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
        if TIMESTAMP not in data:
            raise ValueError("'timestamp' is required")
        attrs = data.get(EVENT_ATTRIBUTES) or {}
        if not isinstance(attrs, Mapping):
            raise ValueError(f"'{EVENT_ATTRIBUTES}' must be an object")
        obj = attrs.get("object") or {}
        pos = attrs.get("position") or {}
        if not isinstance(obj, Mapping) or not isinstance(pos, Mapping):
            raise ValueError(f"'{EVENT_ATTRIBUTES}.object' and '.position' must be objects")
        ordinal = pos.get("ordinal")
        if isinstance(ordinal, str) and ordinal.strip().isdigit():
            ordinal = int(ordinal)
        hits = data.get(HIT_IDS) or ()
        if not isinstance(hits, (list, tuple)):
            raise ValueError(f"'{HIT_IDS}' must be a list")
        if require_actor and not any(_opt_str(data, k) for k in (CLIENT_ID, SESSION_ID, USER_ID)):
            raise ValueError("one of 'client_id', 'session_id', 'user_id' is required")
        return cls(action_name=data.get(ACTION_NAME) or "", timestamp=parse_timestamp(data[TIMESTAMP]),
                   query_id=_opt_str(data, QUERY_ID), user_query=_opt_str(data, USER_QUERY),
                   hit_ids=tuple(str(h) for h in hits), object_id=_opt_str(obj, "object_id"),
                   object_id_field=_opt_str(obj, "object_id_field"), position=ordinal,
                   client_id=_opt_str(data, CLIENT_ID), session_id=_opt_str(data, SESSION_ID),
                   user_id=_opt_str(data, USER_ID), application=_opt_str(data, APPLICATION),
                   message=_opt_str(data, MESSAGE),
                   extra_attributes={k: v for k, v in attrs.items() if k not in ("object", "position")})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {ACTION_NAME: self.action_name,
                             TIMESTAMP: self.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}
        for key, v in ((QUERY_ID, self.query_id), (USER_QUERY, self.user_query), (CLIENT_ID, self.client_id),
                       (SESSION_ID, self.session_id), (USER_ID, self.user_id), (APPLICATION, self.application),
                       (MESSAGE, self.message)):
            if v is not None:
                d[key] = v
        if self.hit_ids:
            d[HIT_IDS] = list(self.hit_ids)
        attrs: dict[str, Any] = dict(self.extra_attributes)
        if self.object_id is not None:
            attrs["object"] = {"object_id": self.object_id, **({"object_id_field": self.object_id_field}
                                                               if self.object_id_field else {})}
        if self.position is not None:
            attrs["position"] = {"ordinal": self.position}
        if attrs:
            d[EVENT_ATTRIBUTES] = attrs
        return d


def index_body() -> dict[str, Any]:
    """Strict at the top level; other ``event_attributes`` are kept in the source but not indexed."""
    kw = {"type": "keyword"}
    return {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                ACTION_NAME: kw, QUERY_ID: kw, CLIENT_ID: kw, SESSION_ID: kw, USER_ID: kw, APPLICATION: kw,
                USER_QUERY: {"type": "keyword", "ignore_above": 512, "fields": {"text": {"type": "text"}}},
                HIT_IDS: kw,
                TIMESTAMP: {"type": "date"},
                MESSAGE: {"type": "text"},
                EVENT_ATTRIBUTES: {
                    "type": "object", "dynamic": False,
                    "properties": {
                        "object": {"properties": {"object_id": kw, "object_id_field": kw}},
                        "position": {"properties": {"ordinal": {"type": "integer"}}},
                    },
                },
            },
        },
    }


def read_events(path: str | Path) -> list[Event]:
    """Events from a JSON-lines file; the first bad line raises :class:`EventError` naming it."""
    path = Path(path)
    out = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise EventError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Event.from_dict(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise EventError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            except ValueError as exc:
                raise EventError(f"{path}:{n}: {exc}") from None
    return out


def write_events_file(events: Iterable[Event], path: str | Path) -> int:
    path = Path(path)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def write_events(client: OpenSearch, events: Iterable[Event], index: str = DEFAULT_INDEX,
                 scrubber: EventScrubber | None = None) -> int:
    """Create the events index if needed and add the events (ids generated by OpenSearch).

    Every event goes through ``scrubber`` first (default: one with the secret from
    ``CMSEARCH_EVENTS_SECRET``), so no raw user id and no IP address reaches the index.
    """
    scrubber = scrubber if scrubber is not None else EventScrubber.from_environment()
    ensure_index(client, index, index_body())
    return bulk_write(client, index, ((None, scrubber.scrub(e).to_dict()) for e in events))


def scan_events(client: OpenSearch, index: str = DEFAULT_INDEX, *, application: str | None = None,
                since: str | None = None, until: str | None = None) -> Iterator[Event]:
    """Every event of the index (optionally one application, a time range), streamed by scroll."""
    filters: list[dict] = []
    if application:
        filters.append({"term": {APPLICATION: application}})
    if since or until:
        filters.append({"range": {TIMESTAMP: {k: v for k, v in (("gte", since), ("lt", until)) if v}}})
    query = {"query": {"bool": {"filter": filters}}} if filters else {"query": {"match_all": {}}}
    for hit in helpers.scan(client, index=index, query=query, size=1000, preserve_order=False):
        try:
            yield Event.from_dict(hit["_source"], require_actor=False)
        except ValueError as exc:
            raise EventError(f"{index}/{hit['_id']}: {exc}") from None


_PERIOD = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_period(text: str) -> timedelta:
    """``90d``, ``12w``, ``36h``: a positive retention period."""
    m = _PERIOD.match(str(text).lower())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"period {text!r}: give a positive whole number and a unit, h (hours), d (days) "
                         "or w (weeks), e.g. 90d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def purge_events(client: OpenSearch, index: str, older_than: timedelta, *, now: datetime | None = None,
                 dry_run: bool = False) -> tuple[int, datetime]:
    """Delete the events whose timestamp is before ``now - older_than``; ``(how many, cutoff)``.

    Only those: events at or after the cutoff, and documents without a timestamp, stay.  The
    cutoff is computed here, once, so the number reported is the number of the events that were
    older than it.  ``dry_run`` counts them instead.  Raises :class:`EventError` when the
    engine could not delete some of them (they are named by count; a re-run finishes the job).
    """
    if older_than <= timedelta(0):
        raise ValueError("the retention period must be positive")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must have a time zone")
    cutoff = now - older_than
    stamp = cutoff.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    query = {"query": {"range": {TIMESTAMP: {"lt": stamp}}}}
    if dry_run:
        return int(client.count(index=index, body=query)["count"]), cutoff
    resp = client.delete_by_query(index=index, body=query, params={"refresh": "true", "conflicts": "proceed"})
    failures = resp.get("failures") or []
    conflicts = int(resp.get("version_conflicts") or 0)
    if failures or conflicts:
        first = failures[0] if failures else "version conflicts"
        raise EventError(f"{index}: deleted {resp.get('deleted', 0)} events before {stamp}, but "
                         f"{len(failures) + conflicts} could not be deleted (first: {first}); run the purge again")
    return int(resp.get("deleted") or 0), cutoff
