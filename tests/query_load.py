"""A bounded query load for the kill -9 tests: threads that keep searching, every search logged.

What the tests read from it: how many queries ran, which failed (and why, timed from the kill),
how many were answered while a node was down, and the longest gap between answers.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence


class QueryLoad:
    """``threads`` threads, each running ``searchers`` x ``requests`` in turn until :meth:`stop`."""

    def __init__(self, searchers: Sequence[Any], requests: Sequence[Any], threads: int) -> None:
        self.searchers, self.requests = list(searchers), list(requests)
        self.log: list[tuple[float, bool, str]] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(k,), daemon=True) for k in range(threads)]
        self.t0 = self.t_end = 0.0

    def _work(self, k: int) -> None:
        i = k
        while not self._stop.is_set():
            s, req = self.searchers[i % len(self.searchers)], self.requests[i % len(self.requests)]
            i += 1
            try:
                res = s.search(req)
                ok, why = bool(res.hits), "" if res.hits else "no hits"
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                ok, why = False, f"{type(exc).__name__}: {exc}"[:200]
            with self._lock:
                self.log.append((time.monotonic(), ok, why))

    def start(self) -> None:
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self.t_end = time.monotonic()

    @property
    def answered(self) -> list[float]:
        return [t for t, ok, _ in self.log if ok]

    def summary(self, t_kill: float, t_restart: float) -> dict[str, Any]:
        """Queries, errors (seconds after the kill, why), answers while the node was down, the
        longest gap between answers (from the start to the end of the load)."""
        errors = [(round(t - t_kill, 2), why) for t, ok, why in self.log if not ok]
        marks = [self.t0, *self.answered, self.t_end]
        return {"queries": len(self.log), "errors": len(errors),
                "answered_while_down": sum(1 for t in self.answered if t_kill < t < t_restart),
                "answered_while_restarting": sum(1 for t in self.answered if t >= t_restart),
                "longest_gap_s": round(max(b - a for a, b in zip(marks, marks[1:])), 2),
                "restart_s": round(self.t_end - t_restart, 1), "first_errors": errors[:5]}
