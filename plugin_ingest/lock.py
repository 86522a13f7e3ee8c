"""One load at a time per checkpoint and per rejects file: an advisory lock beside each.

Two loads of one catalog into one index would otherwise share a checkpoint: the second resumes
from the first's live checkpoint, both write the same documents and both append the same
entries to the rejects file.  A load therefore holds an exclusive ``flock`` on
``<file>.lock`` for its checkpoint and its rejects file until it ends; a second load refuses,
naming the running one (pid, host, start time, from the lock file), or waits for it.

``flock`` is released by the kernel when the holder dies, even by ``kill -9``, so a crashed load
never leaves a stale lock behind; the lock file is removed on release, and a waiter that gets
the lock on a file someone removed in the meantime opens the new one and tries again.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["LoadLock", "LockBusy", "lock_path", "lock_all", "describe_holder"]


class LockBusy(RuntimeError):
    """Another load holds the lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: dict[str, Any], what: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"another load is using {what}: {describe_holder(holder)} (lock {path}); "
                         "wait for it to finish, stop it, or pass --wait to start when it ends")


def lock_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".lock")


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "a load that has not written its details yet"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {holder.get('pid', '?')}{where}, started {when}, {holder.get('what', 'a load')}"


class LoadLock:
    """An exclusive lock on ``lock_path(path)``; ``what`` says in messages what it protects."""

    def __init__(self, path: str | Path, what: str, info: dict[str, Any] | None = None) -> None:
        self.path = lock_path(path)
        self.what = what
        self.info = dict(info or {})
        self._fd: int | None = None

    def acquire(self, *, wait: bool = False, poll: float = 0.5,
                on_wait: Callable[[dict[str, Any]], None] | None = None) -> "LoadLock":
        """Take the lock, or raise :class:`LockBusy`; with ``wait``, poll until it is free.

        Polling (not a blocking ``flock``) keeps Ctrl-C and SIGTERM working while waiting.
        """
        told = False
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                if not wait:
                    raise LockBusy(self.path, holder, self.what) from None
                if not told and on_wait is not None:
                    on_wait(holder)
                    told = True
                time.sleep(poll)
                continue
            if not self._still_linked(fd):   # released and removed by its holder meanwhile
                os.close(fd)
                continue
            self._fd = fd
            self._write({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), **self.info})
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)   # while still holding it, so no one locks a removed file
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "LoadLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def _still_linked(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return os.fstat(fd).st_ino == st.st_ino

    def _write(self, info: dict[str, Any]) -> None:
        data = json.dumps(info, ensure_ascii=False).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)


def lock_all(targets: list[tuple[Path, str]], info: dict[str, Any], *, wait: bool = False,
             log: Callable[[str], None] = lambda s: None) -> list[LoadLock]:
    """Locks on each ``(path, what)``, taken in one order (two loads waiting cannot deadlock);
    all or none: on :class:`LockBusy` (or Ctrl-C while waiting) the ones taken are released."""
    locks: list[LoadLock] = []
    try:
        for path, what in sorted(targets, key=lambda t: str(Path(t[0]).resolve())):
            locks.append(LoadLock(path, what, info).acquire(
                wait=wait, on_wait=lambda holder, what=what: log(
                    f"waiting for the load that holds {what} to finish ({describe_holder(holder)})")))
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 64 * 1024, 0)
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}
