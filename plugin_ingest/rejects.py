"""The rejects file: one JSON line per record that was not indexed (and per image left out).

Nothing is lost silently: each entry carries the source line number, the product id when one
could be read, the stage that refused it and why, and the record itself (or its raw text
when it could not be parsed) so it can be fixed and loaded again.  Entries with
``"rejected": false`` are products that *were* indexed but without one of their images
(``--image-errors keep``); the summary counts them apart.

The file is written in catalog order and flushed before each checkpoint; a resumed load
truncates it back to the size the checkpoint recorded, so entries are never duplicated.

A catalog may hold private data (image URLs with credentials in them, unpublished products),
so the file is readable by its owner only (0600, also when it already existed with a wider
mode), and user-info in URLs (``https://user:secret@host/...``) is replaced by ``***`` in
every entry, as the index stores them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from engine.urls import redact_urls

__all__ = ["RejectsWriter", "read_rejects", "open_private", "STAGE_READ", "STAGE_VALIDATE", "STAGE_IMAGE", "STAGE_INDEX"]

STAGE_READ = "read"          # malformed JSON / CSV, invalid UTF-8, over-long record
STAGE_VALIDATE = "validate"  # schema: missing id or title, wrong types, limits, duplicate id
STAGE_IMAGE = "image"        # image missing, unreadable, too big, timed out
STAGE_INDEX = "index"        # OpenSearch refused the document


def open_private(path: str | Path, mode: str):
    """``path`` opened with ``mode`` ("a", "w", "r+b", ...), created 0600 and made 0600 if it was wider.

    ``os.open`` with mode 0600 sets the mode of a new file atomically (no window in which the
    umask's 0644 applies); ``fchmod`` tightens a file an earlier version left world-readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_CREAT | (os.O_APPEND | os.O_WRONLY if mode.startswith("a") else
                          os.O_RDWR if "+" in mode else os.O_WRONLY | os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


class RejectsWriter:
    """Appends entries to ``path``; created on the first entry, so a clean load leaves no file."""

    def __init__(self, path: str | Path, *, resume_size: int | None = None) -> None:
        self.path = Path(path)
        self._fh = None
        self.entries = 0
        if resume_size is not None and self.path.exists():
            with open_private(self.path, "r+b") as fh:
                fh.truncate(resume_size)
        elif resume_size is None and self.path.exists():
            self.path.unlink()  # a fresh load: rejects of an earlier load would mislead

    def write(self, *, line: int, reason: str, stage: str, product_id: str | None = None,
              record: Mapping[str, Any] | None = None, raw: str | None = None, rejected: bool = True,
              image: str | None = None, end_line: int | None = None,
              images_left_out: list[str] | None = None) -> None:
        entry: dict[str, Any] = {"line": line}
        if end_line is not None and end_line > line:   # a CSV record over several physical lines
            entry["end_line"] = end_line
        entry.update({"id": product_id, "stage": stage, "reason": reason, "rejected": rejected})
        if image is not None:
            entry["image"] = image if not image.startswith("data:") else image[:64] + "..."
        if images_left_out is not None:
            entry["images_left_out"] = images_left_out
        if record is not None:
            entry["record"] = record
        elif raw is not None:
            entry["raw"] = raw
        if self._fh is None:
            self._fh = open_private(self.path, "a")
        self._fh.write(redact_urls(json.dumps(entry, ensure_ascii=False, default=str)) + "\n")
        self.entries += 1

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def size(self) -> int:
        """Bytes on disk after a flush (what a checkpoint records)."""
        self.flush()
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def read_rejects(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a rejects file (tests, tools)."""
    p = Path(path)
    if not p.exists():
        return []
    with p.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
