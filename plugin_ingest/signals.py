"""SIGTERM and SIGHUP stop a load the way Ctrl-C does.

``timeout``, systemd, container runtimes and a closed terminal send SIGTERM or SIGHUP, not
SIGINT.  By default Python dies on those at once: no summary, the index's refresh left off
(``-1``, so what was written is not searchable until the next load), the exit status of a
kill.  Under :func:`stop_on_signals` each of them raises :class:`Stopped` (a
``KeyboardInterrupt``) in the main thread, so the load settles what it holds, checkpoints,
restores the refresh interval and reports, like after Ctrl-C; the command then exits
``128 + signal`` (130 INT, 143 TERM, 129 HUP), as a shell reports a process killed by it.

A second signal while the load is settling is ignored with a message: stopping half-way
through the clean-up would leave exactly the state this avoids (``kill -9`` still works, and
the checkpoint still makes that resumable).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Stopped", "stop_on_signals", "exit_status"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(signum: int | None) -> int:
    """The exit status after being stopped by ``signum`` (130 when unknown: Ctrl-C's)."""
    return 128 + int(signum if signum is not None else signal.SIGINT)


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Turn ``signals`` into :class:`Stopped` while the block runs (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            sys.stderr.write(f"{signal.Signals(signum).name} received while stopping: finishing the clean-up "
                             "first (kill -9 stops at once; the checkpoint keeps the load resumable)\n")
            return
        received.append(signum)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
