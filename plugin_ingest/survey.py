"""The first, cheap pass over the catalog: ids, brands, category paths, record count.

Why two passes over a streamed file: the jieba user dictionary must be complete *before* the
first title is segmented.  A dictionary grown while loading would segment product 1 without
the brand first seen in product 9,000, and the index would disagree with itself and with the
query builder (which segments with every brand of the index).  The first pass parses each
record but keeps only a few short strings per record, so it costs a fraction of the load
(no validation, no images, no models) and also gives:

- the record count, so the progress bar has an ETA;
- duplicate ids: the first occurrence of an id is loaded, later ones are rejected with the
  line of the first, instead of silently overwriting it;
- the set of the catalog's ids for ``--delete-missing``, which must not be held in memory for
  a catalog larger than memory, so it lives in a temporary SQLite file (stdlib, on disk);
- how many records have no readable id (then ``--delete-missing`` refuses to run, since a
  product behind a malformed line would otherwise be deleted).
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .catalog import Catalog
from .enrich import category_value
from .schema import InvalidRecord, Limits, product_id, validate

__all__ = ["Survey", "IdSet", "survey"]


class IdSet:
    """A disk-backed set of product ids with the line each was first seen on."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="cmsearch-ids-", dir=directory))
        self._db = sqlite3.connect(str(self._dir / "ids.sqlite"), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, line INTEGER, valid INTEGER) WITHOUT ROWID")
        self.size = 0

    def add(self, pid: str, line: int, valid: bool = True) -> int | None:
        """Add ``pid``; None when it is new, else the line of the occurrence it duplicates.

        Only a *valid* earlier occurrence makes a later one a duplicate: when the first record
        of an id is rejected anyway, the next valid one takes its place and gets loaded.
        """
        cur = self._db.execute("INSERT OR IGNORE INTO ids (id, line, valid) VALUES (?, ?, ?)",
                               (pid, line, int(valid)))
        if cur.rowcount == 1:
            self.size += 1
            return None
        first_line, first_valid = self._db.execute("SELECT line, valid FROM ids WHERE id = ?", (pid,)).fetchone()
        if first_valid:
            return int(first_line)
        if valid:
            self._db.execute("UPDATE ids SET line = ?, valid = 1 WHERE id = ?", (line, pid))
        return None

    def commit(self) -> None:
        self._db.commit()

    def __contains__(self, pid: str) -> bool:
        return self._db.execute("SELECT 1 FROM ids WHERE id = ?", (pid,)).fetchone() is not None

    def missing(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` not in the set."""
        return [i for i in ids if i not in self]

    def __iter__(self) -> Iterator[str]:
        for (pid,) in self._db.execute("SELECT id FROM ids ORDER BY id"):
            yield pid

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


@dataclass
class Survey:
    records: int = 0
    brands: set[str] = field(default_factory=set)           # as written (normalized later)
    category_paths: set[str] = field(default_factory=set)   # levels joined as the index stores them
    duplicates: dict[int, int] = field(default_factory=dict)  # line -> line of the first occurrence
    unreadable_ids: int = 0
    ids: IdSet | None = None

    def close(self) -> None:
        if self.ids is not None:
            self.ids.close()


def survey(catalog: Catalog, *, limits: Limits = Limits(), temp_dir: str | Path | None = None) -> Survey:
    """Read the whole catalog once for ids, brands and categories (see the module docstring).

    Records are validated here too (cheap, no I/O), so that brands and categories come only
    from valid products and a duplicate is only a duplicate of a product that will be loaded.
    """
    csv_mode = catalog.fmt != "jsonl"
    s = Survey(ids=IdSet(temp_dir))
    try:
        for n, rec in enumerate(catalog.records(), 1):
            s.records += 1
            if not rec.ok:
                s.unreadable_ids += 1
                continue
            try:
                p = validate(rec.data, csv_mode=csv_mode, limits=limits)
            except InvalidRecord:
                pid = product_id(rec.data, csv_mode=csv_mode, limits=limits)
                if pid is None:
                    s.unreadable_ids += 1
                else:
                    s.ids.add(pid, rec.line, valid=False)
                continue
            first = s.ids.add(p.id, rec.line, valid=True)
            if first is not None:
                s.duplicates[rec.line] = first
                continue
            if p.brand:
                s.brands.add(p.brand)
            if p.category:
                s.category_paths.add(category_value(p.category))
            if n % 50_000 == 0:
                s.ids.commit()
        s.ids.commit()
    except BaseException:
        s.close()
        raise
    return s
