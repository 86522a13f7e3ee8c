"""Counts and stage timings of a load, and the summary table a user reads at the end.

The summary must add up: every record read is indexed, rejected or unchanged
(``read == indexed + rejected + unchanged``), and the table says so; a load of one part
(``--part``) also reads the records of the other parts and counts them apart
(``read == indexed + rejected + unchanged + other parts``).  Time per stage is the
*busy* time of that stage summed over the threads doing it; the stages overlap (images are
decoded while the previous batch is encoded and the one before is written), so the busy
times add up to more than the wall time, and the share of wall time shows which stage bounds
the load.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

__all__ = ["Counts", "StageTimes", "IngestReport", "ProgressLines", "STAGES"]

# in flow order; "survey" is the first, cheap pass over the catalog (ids, brands, categories),
# "lookup" the per-batch mget of stored content hashes
STAGES = ("survey", "read", "tokenize", "lookup", "fetch", "decode", "ocr", "encode", "bulk", "merge")


@dataclass
class Counts:
    read: int = 0
    indexed: int = 0          # written (new or changed), including text-only updates
    updated_text_only: int = 0  # of indexed: re-tokenized without re-encoding
    unchanged: int = 0
    rejected: int = 0
    images: int = 0           # images decoded and encoded
    images_dropped: int = 0   # images left out of a kept product (--image-errors keep)
    deleted: int = 0          # --delete-missing
    other_parts: int = 0      # --part: records of the other parts, read past and left to them
    rejected_by: Counter = field(default_factory=Counter)

    def balanced(self) -> bool:
        return self.read == self.indexed + self.rejected + self.unchanged + self.other_parts

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("read", "indexed", "updated_text_only", "unchanged", "rejected",
                                            "images", "images_dropped", "deleted", "other_parts")}
        d["rejected_by"] = dict(self.rejected_by)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Counts":
        c = cls(**{k: int(v) for k, v in d.items() if k != "rejected_by"})
        c.rejected_by = Counter({k: int(v) for k, v in (d.get("rejected_by") or {}).items()})
        return c


class StageTimes:
    """Busy seconds and item counts per stage; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.items: dict[str, int] = {s: 0 for s in STAGES}

    def add(self, stage: str, seconds: float, items: int = 1) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.items[stage] = self.items.get(stage, 0) + items

    @contextmanager
    def measure(self, stage: str, items: int = 1) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0, items)


@dataclass
class IngestReport:
    index: str
    catalog: str
    counts: Counts
    times: StageTimes
    wall_seconds: float
    dry_run: bool = False
    resumed_from_line: int = 0
    rejects_path: str | None = None
    notes: list[str] = field(default_factory=list)
    bulk_retries: int = 0
    resumed_read: int = 0  # own records counted before a resume (not part of this run's rate)
    stopped: str | None = None  # why the load stopped early (the summary is partial), None when complete
    part: str | None = None     # "2/3" for a load of one part (--part), None for the whole catalog

    @property
    def products_per_second(self) -> float:
        """This run's own records per second (a part's load: not the other parts' it read past)."""
        done = self.counts.read - self.counts.other_parts - self.resumed_read
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def table(self) -> str:
        c = self.counts
        verb = "would be indexed" if self.dry_run else "indexed"
        lines = [f"{'DRY RUN: ' if self.dry_run else ''}{'PARTIAL (load stopped): ' if self.stopped else ''}"
                 f"{f'part {self.part} of ' if self.part else ''}catalog {self.catalog} -> index {self.index}"]
        if self.resumed_from_line:
            lines.append(f"resumed after line {self.resumed_from_line} (counts include the earlier run)")
        rows = [("read", c.read), (verb, c.indexed)]
        if c.updated_text_only:
            rows.append(("  of which text-only updates", c.updated_text_only))
        rows += [("unchanged (skipped)", c.unchanged), ("rejected", c.rejected)]
        for reason, n in sorted(c.rejected_by.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append((f"  {reason}", n))
        if self.part:
            rows.append(("other parts' (skipped)", c.other_parts))
        rows += [("images encoded" if not self.dry_run else "images decoded", c.images),
                 ("images left out (product kept)", c.images_dropped)]
        if c.deleted:
            rows.append(("deleted (absent from catalog)", c.deleted))
        width = max(len(r[0]) for r in rows)
        lines.append("")
        lines += [f"  {name:<{width}}  {n:>9,}" for name, n in rows]
        check = "ok" if c.balanced() else "MISMATCH"
        sums = "read = indexed + rejected + unchanged" + (" + other parts" if self.part else "")
        lines.append(f"  {sums:<{width}}  {check}")
        lines.append("")
        lines.append(f"  {'stage':<10} {'items':>9} {'busy s':>9} {'ms/item':>9} {'% of wall':>9}")
        for s in STAGES:
            secs, n = self.times.seconds.get(s, 0.0), self.times.items.get(s, 0)
            if not n and secs < 1e-4:
                continue
            per = 1000 * secs / n if n else 0.0
            share = 100 * secs / self.wall_seconds if self.wall_seconds > 0 else 0.0
            lines.append(f"  {s:<10} {n:>9,} {secs:>9.2f} {per:>9.2f} {share:>8.0f}%")
        lines.append(f"  {'wall':<10} {'':>9} {self.wall_seconds:>9.2f}    "
                     f"{self.products_per_second:,.1f} products/s")
        if self.bulk_retries:
            lines.append(f"  bulk requests retried: {self.bulk_retries}")
        if (c.rejected or c.images_dropped) and self.rejects_path:
            lines.append(f"\nrejects: {self.rejects_path}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "catalog": self.catalog, "part": self.part, "dry_run": self.dry_run,
                "counts": self.counts.to_dict(), "wall_seconds": round(self.wall_seconds, 3),
                "products_per_second": round(self.products_per_second, 2),
                "stages": {s: {"seconds": round(self.times.seconds.get(s, 0.0), 3),
                               "items": self.times.items.get(s, 0)} for s in STAGES},
                "resumed_from_line": self.resumed_from_line, "rejects": self.rejects_path,
                "bulk_retries": self.bulk_retries, "notes": list(self.notes),
                "complete": self.stopped is None, "stopped": self.stopped}


class ProgressLines:
    """Progress as plain lines (a log file, a CI job): one every ``every`` seconds of settling.

    A progress bar only makes sense on a terminal; a load written to a file would otherwise say
    nothing until it ends.  ``update`` has tqdm's signature, so the load drives either.
    """

    def __init__(self, counts: Counts, total: int, every: float, log: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = counts
        self.total = total
        self.every = every
        self.log = log
        self.clock = clock
        self._start = clock()
        self._start_read = counts.read
        self._last = self._start

    def update(self, n: int = 1) -> None:
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        self.log(self.line(now))

    def line(self, now: float) -> str:
        c = self.counts
        share = f" ({100 * c.read / self.total:.0f}%)" if self.total else ""
        elapsed = now - self._start
        rate = (c.read - self._start_read) / elapsed if elapsed > 0 else 0.0
        eta = ""
        if rate > 0 and self.total > c.read:
            eta = f", about {_duration((self.total - c.read) / rate)} left"
        return (f"progress: {c.read:,}/{self.total:,} records{share}: {c.indexed:,} indexed, {c.rejected:,} rejected, "
                f"{c.unchanged:,} unchanged; {rate:,.1f} records/s{eta}")

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"
