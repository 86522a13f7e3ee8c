"""Writing documents with opensearch-py's ``helpers.streaming_bulk``, retrying what is worth retrying.

``streaming_bulk`` chunks actions by count and by bytes.  It can also retry documents that got
``429 Too Many Requests``, but not server errors (5xx) or a request that never got an answer
(connection reset, timeout), so :class:`BulkWriter` keeps the one retry policy itself:
``streaming_bulk`` runs with ``max_retries=0`` and, with ``raise_on_exception=False``, hands
back every 429, 5xx and unanswered document as a per-document failure; the writer sends just
those again with exponential backoff, up to ``max_retries`` rounds, so a document is sent at
most ``max_retries + 1`` times.  (Two nested loops, ``streaming_bulk``'s inside ours, sent a
429 up to ``(max_retries + 1)**2`` times.)  Everything else (a mapping error, a refused
document) is final and returned per document, so the pipeline can put it in the rejects file
with OpenSearch's reason.

Documents that still fail that way after the last retry are *not* rejected (nothing is wrong
with them): :class:`ClusterUnavailable` is raised and the load stops at its last checkpoint.

Retrying is safe because every action is idempotent: ``index`` and ``update`` carry the
product id as ``_id``.

Documents arrive already serialized (the pipeline serializes each once and knows its size);
``streaming_bulk`` passes strings through unchanged.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError

__all__ = ["BulkOp", "BulkOutcome", "BulkWriter", "ClusterUnavailable", "get_refresh_interval", "set_refresh_interval",
           "error_text", "DEFAULT_MAX_DOCS", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_DOCS = 256
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class ClusterUnavailable(RuntimeError):
    """Documents still got 5xx / no answer after every retry: the cluster is down or overloaded.

    Not a property of the documents, so they are not rejected: the load stops, its checkpoint
    stays, and a later run continues once the cluster is back.
    """


@dataclass(frozen=True)
class BulkOp:
    kind: str              # "index", "update" or "delete"
    id: str
    source: str | None     # serialized body: the document (index) or {"doc": ...} (update)

    @property
    def size(self) -> int:
        return len(self.id) + 64 + (len(self.source) if self.source else 0)


@dataclass(frozen=True)
class BulkOutcome:
    id: str
    ok: bool
    status: Any = 200
    error: str | None = None
    attempts: int = 1


def error_text(error: Any) -> str:
    """OpenSearch's per-document error object as one readable line."""
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {error_text(cause)})"
        return text
    return str(error)


def _retryable(status: Any) -> bool:
    if status == "N/A" or status is None:  # no answer: connection error or timeout
        return True
    try:
        code = int(status)
    except (TypeError, ValueError):
        return False
    return code == 429 or 500 <= code <= 599


class BulkWriter:
    """Sends :class:`BulkOp` lists to one index; returns one :class:`BulkOutcome` per op.

    ``redact`` cleans messages that might echo a URL (credentials never reach a report).
    ``sleep`` is injectable for tests of the backoff.
    """

    def __init__(self, client: OpenSearch, index: str, *, max_docs: int = DEFAULT_MAX_DOCS,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_retries: int = 6, initial_backoff: float = 0.5,
                 max_backoff: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 redact: Callable[[str], str] = lambda s: s) -> None:
        self.client = client
        self.index = index
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.redact = redact
        self.retried_rounds = 0   # rounds of re-sending 429 / 5xx / unanswered documents

    def _expand(self, op: BulkOp) -> tuple[dict, str | None]:
        return {op.kind: {"_index": self.index, "_id": op.id}}, op.source

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))

    def write(self, ops: Sequence[BulkOp]) -> dict[str, BulkOutcome]:
        by_id = {op.id: op for op in ops}
        if len(by_id) != len(ops):
            raise ValueError("one bulk write must not hold two operations on the same id")
        outcomes: dict[str, BulkOutcome] = {}
        pending: list[BulkOp] = list(ops)
        retry: list[BulkOp] = []
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retried_rounds += 1
                self.sleep(self.backoff(attempt))
            retry: list[BulkOp] = []
            for ok, item in helpers.streaming_bulk(
                    self.client, pending, chunk_size=self.max_docs, max_chunk_bytes=self.max_bytes,
                    expand_action_callback=self._expand, raise_on_error=False, raise_on_exception=False,
                    max_retries=0, yield_ok=True):   # the retries are this loop's (module docstring)
                _, info = next(iter(item.items()))
                pid = info.get("_id")
                if pid not in by_id:
                    continue
                status = info.get("status")
                if ok:
                    outcomes[pid] = BulkOutcome(pid, True, status, None, attempt + 1)
                elif _retryable(status):
                    retry.append(by_id[pid])
                    last_error = self.redact(error_text(info.get("error")))
                else:
                    outcomes[pid] = BulkOutcome(pid, False, status, self.redact(error_text(info.get("error"))),
                                                attempt + 1)
            if not retry:
                break
            pending = retry
        if retry:
            raise ClusterUnavailable(f"{len(retry)} document(s) could not be written after {self.max_retries} "
                                     f"retries (last error: {last_error})")
        for op in ops:  # a document the server never mentioned is a failure, not a success
            outcomes.setdefault(op.id, BulkOutcome(op.id, False, None, "no result for this document in the bulk response"))
        return outcomes

    def delete(self, ids: Iterable[str]) -> tuple[int, list[BulkOutcome]]:
        """Delete these ids (404 counts as done); returns (deleted, failures)."""
        ops = [BulkOp("delete", i, None) for i in ids]
        deleted, failures = 0, []
        for start in range(0, len(ops), self.max_docs):
            for o in self.write(ops[start:start + self.max_docs]).values():
                if o.ok:
                    deleted += 1
                elif o.status != 404:
                    failures.append(o)
        return deleted, failures


def get_refresh_interval(client: OpenSearch, index: str) -> Any:
    """The index's own ``refresh_interval`` setting, or None when it uses the cluster default."""
    try:
        resp = client.indices.get_settings(index=index, name="index.refresh_interval")
    except NotFoundError:
        return None
    settings = (resp.get(index) or next(iter(resp.values()), {})).get("settings", {})
    return (settings.get("index") or {}).get("refresh_interval")


def set_refresh_interval(client: OpenSearch, index: str, value: Any) -> None:
    """Set (or with None, reset to the default) the index's refresh interval."""
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": value}})
