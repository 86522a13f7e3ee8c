"""Progress lines for the long phases of training, written as plain lines (no terminal needed).

`cmsearch train` runs for minutes on a large catalog, usually with its output going to a log
file or a CI job, where carriage-return progress bars show nothing. So every phase says when it
starts, says how far it is at most every ``every`` seconds, and says when it is done; lines go to
the caller's log function (which flushes).
"""
from __future__ import annotations

import time
from typing import Callable

__all__ = ["Progress", "throttled"]


class Progress:
    """``with Progress(log, "encoding texts", total) as p: ... p.update(done)``."""

    def __init__(self, log: Callable[[str], None] | None, what: str, total: int, unit: str = "",
                 every: float = 5.0):
        self.log = log or (lambda s: None)
        self.what, self.total, self.unit, self.every = what, int(total), unit, float(every)
        self.t0 = self._last = time.perf_counter()
        self.done = 0

    def __enter__(self) -> "Progress":
        self.log(f"{self.what}: {self.total} {self.unit} ...".replace("  ", " "))
        return self

    def update(self, done: int, note: str = "") -> None:
        self.done = int(done)
        now = time.perf_counter()
        if now - self._last >= self.every and self.done < self.total:
            self._last = now
            self.log(self._line(now, note))

    def _line(self, now: float, note: str = "") -> str:
        el = now - self.t0
        rate = self.done / el if el > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f", about {left:.0f}s left" if self.done < self.total and rate > 0 else ""
        return (f"  {self.what}: {self.done}/{self.total} {self.unit}, {el:.1f}s ({rate:.1f}/s){eta}"
                + (f"; {note}" if note else ""))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            el = time.perf_counter() - self.t0
            self.log(f"  {self.what} done: {self.done}/{self.total} {self.unit} in {el:.1f}s".replace("  in", " in"))


def throttled(log: Callable[[str], None], every: float = 10.0) -> Callable[[str], None]:
    """``log`` for a stream of lines (one per epoch), passing at most one line every ``every`` seconds."""
    last = [-float("inf")]

    def out(line: str) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            log(line)
    return out
