"""Where an interrupted load stands, so the next run continues instead of starting over.

A checkpoint is written after every bulk flush, once everything before it is settled
(indexed, rejected or unchanged) and the rejects file is flushed.  It records the byte offset
and line number to continue from, the counts so far, the rejects file's size (a resumed load
truncates the file back to it, so no entry appears twice) and the index's own refresh
interval (a crashed load leaves refresh turned off; the resumed one restores the original,
not the ``-1`` it finds), and whether the load created the index (then the load that finishes
it, a resume included, force-merges it as the creating load would have).

Records read after the last checkpoint but lost in the crash are simply read again; their
documents carry ``_id`` = product id and a content hash, so re-reading one can neither
duplicate it nor encode it twice if it was already written.

A checkpoint only applies to the same catalog (path, size and first MiB), the same index and
the same settings (models, heads, analysis, options); otherwise it is ignored with a note and
the load starts from the top (which is cheap: unchanged products are skipped by hash).
The file is written atomically (temporary file + rename, created 0600 like every file that may
hold private data) and removed when a load completes.  Only one load uses a checkpoint at a
time (:mod:`plugin_ingest.lock`).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Checkpoint", "CheckpointStore", "start_or_resume", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    catalog: dict[str, Any]
    index: str
    settings: str                 # identity of models + analysis + options
    offset: int = 0               # byte offset to continue from
    line: int = 0                 # physical lines before ``offset``
    counts: dict[str, Any] = field(default_factory=dict)
    rejects_path: str | None = None
    rejects_size: int = 0
    refresh_interval: Any = None  # the index's own setting before the load (None: the default)
    created_index: bool = False   # the load created the index: merge it when the load (or its resume) ends
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    version: int = CHECKPOINT_VERSION

    def matches(self, catalog: dict[str, Any], index: str, settings: str) -> str | None:
        """None when this checkpoint belongs to that load, else why not."""
        if self.version != CHECKPOINT_VERSION:
            return f"checkpoint format {self.version} is not {CHECKPOINT_VERSION}"
        if self.index != index:
            return f"checkpoint is for index {self.index!r}"
        if self.catalog != catalog:
            return "the catalog file changed since the checkpoint was written"
        if self.settings != settings:
            return "models, heads or load options changed since the checkpoint was written"
        return None


class CheckpointStore:
    """Reads and writes one checkpoint file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> Checkpoint | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Checkpoint(**data)
        except (OSError, ValueError, TypeError):
            return None  # unreadable: treated as absent (the load is idempotent anyway)

    def save(self, cp: Checkpoint) -> None:
        cp.updated = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".json", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)   # mkstemp's own mode; said here, since the rename keeps it
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(cp), fh, ensure_ascii=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def start_or_resume(store: CheckpointStore, *, catalog: dict[str, Any], index: str, settings: str,
                    rejects_path: str, use_existing: bool, created_index: bool,
                    refresh_interval: Callable[[], Any]) -> tuple[Checkpoint, bool, str | None]:
    """The checkpoint this load continues from, or a new one saved for it.

    Returns (checkpoint, resumed, note): ``note`` says why an existing checkpoint was not used.
    ``refresh_interval`` reads the index's current setting; it is not asked when a checkpoint
    of an earlier load of this index knows the real one (a crashed load left ``-1`` behind).
    """
    cp = store.load() if use_existing else None
    stale, note = None, None
    if cp is not None:
        why = cp.matches(catalog, index, settings)
        if not why:
            return cp, True, None
        note = f"checkpoint {store.path} not used: {why}; starting from the top (unchanged products are skipped)"
        stale = cp
    refresh = stale.refresh_interval if stale is not None and stale.index == index else refresh_interval()
    cp = Checkpoint(catalog=catalog, index=index, settings=settings, rejects_path=rejects_path,
                    refresh_interval=refresh, created_index=created_index)
    store.save(cp)
    return cp, False, note
