"""``--delete-missing``: delete indexed products whose ids the catalog no longer has.

Only after a complete load, and only when every record had a readable id: a product behind a
malformed line would otherwise be deleted by mistake.  The catalog's ids come from the survey
(a disk-backed set), so a catalog larger than memory is compared without holding it.

A load of one part (``--part``) deletes only the missing ids of its own part: its survey read
the whole catalog, so it knows every id the catalog has, and the other parts' ids are theirs
to delete.  Deleting only its own keeps the parts from deleting the same products N times
(and the parts' ``deleted`` counts add up to a single load's), and a part never touches a
product another part is loading at the same time.
"""
from __future__ import annotations

from typing import Callable

from opensearchpy import OpenSearch, helpers

from .bulk import BulkOutcome, BulkWriter
from .parts import Part
from .survey import Survey

__all__ = ["delete_missing"]

_SCAN_BATCH = 1000


def delete_missing(client: OpenSearch, index: str, sv: Survey, notes: list[str], *, bulk_docs: int,
                   redact: Callable[[str], str] = lambda s: s, part: Part | None = None) -> int:
    """Delete what the catalog lacks (of ``part`` only, when given); returns how many were
    deleted, and says in ``notes`` what was not."""
    if sv.unreadable_ids:
        notes.append(f"--delete-missing skipped: {sv.unreadable_ids} record(s) had no readable id, "
                     "so products behind them could be deleted by mistake; fix them and reload")
        return 0
    if sv.ids is None or sv.ids.size == 0:
        notes.append("--delete-missing skipped: the catalog has no products, refusing to empty the index")
        return 0
    writer = BulkWriter(client, index, max_docs=bulk_docs, redact=redact)
    deleted = 0
    missing: list[str] = []

    def flush() -> None:
        nonlocal deleted, missing
        n, failures = writer.delete(missing)
        deleted += n
        _note_failures(notes, failures)
        missing = []

    for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, _source=False,
                            size=_SCAN_BATCH, preserve_order=False):
        if (part is None or part.owns(hit["_id"])) and hit["_id"] not in sv.ids:
            missing.append(hit["_id"])
        if len(missing) >= _SCAN_BATCH:
            flush()
    if missing:
        flush()
    client.indices.refresh(index=index)
    return deleted


def _note_failures(notes: list[str], failures: list[BulkOutcome]) -> None:
    for f in failures[:5]:
        notes.append(f"could not delete {f.id}: {f.error}")
    if len(failures) > 5:
        notes.append(f"... and {len(failures) - 5} more deletions failed")
