"""One local node's directory and process: where its pid, URL and logs are, and whether it runs.

The pid file is a hint, not the truth: it can be damaged, or name a pid the system has since
given to another process (after ``kill -9``).  A running node is the java process whose command
line runs the launcher on that node's directory, found through ``/proc``; the pid file is only
trusted where there is no ``/proc``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .versions import DEFAULT_VERSION

LAUNCHER_CLASS = "org.cmsearch.engine.Launcher"


def running_launchers() -> dict[bytes, list[int]] | None:
    """Live launcher processes by the node directory they run on; None where ``/proc`` cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return None
    found: dict[bytes, list[int]] = {}
    want = LAUNCHER_CLASS.encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        try:
            i = argv.index(want)
        except ValueError:
            continue
        if i + 1 < len(argv) and pid_alive(int(entry.name)):
            found.setdefault(argv[i + 1], []).append(int(entry.name))
    return {k: sorted(v) for k, v in found.items()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def port_free(port: int) -> bool:
    """True when a listener could bind 127.0.0.1:``port`` now (as the JVM binds: address reuse on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reap(pid: int) -> None:
    try:  # a child of ours that exited must not stay a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass(frozen=True)
class NodeDir:
    """One node's directory (data, logs, pid, READY) and the name the node runs under."""

    path: Path
    name: str

    @property
    def pid_file(self) -> Path:
        return self.path / "pid"

    @property
    def ready_file(self) -> Path:
        return self.path / "READY"

    @property
    def log_file(self) -> Path:
        return self.path / "logs" / "launcher.out"

    @property
    def ports_file(self) -> Path:
        return self.path / "logs" / "http.ports"

    @property
    def secure_file(self) -> Path:
        """Present while the node runs with the security plugin (TLS, users): its URL is https."""
        return self.path / "SECURE"

    def pid(self, launchers: dict[bytes, list[int]] | None = None) -> int | None:
        """The pid of the node running on this directory (found by its command line), or None.

        ``launchers`` is one ``/proc`` scan shared by several nodes' look-ups.
        """
        try:
            recorded: int | None = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            recorded = None
        if launchers is None:
            launchers = running_launchers()
        if launchers is None:  # no /proc: the pid file is all there is
            return recorded if recorded is not None and pid_alive(recorded) else None
        running = launchers.get(os.fsencode(str(self.path)), [])
        if recorded in running:
            return recorded
        return running[0] if running else None

    def url(self, launchers: dict[bytes, list[int]] | None = None) -> str | None:
        """The URL of the node running here, or None (not running, or not bound to HTTP yet)."""
        if self.pid(launchers) is None:
            return None
        try:
            url = self.ready_file.read_text().strip()
        except OSError:
            url = ""
        if not url:  # the READY file is gone (removed by hand or by an old launcher): the ports file
            try:
                url = "http://" + self.ports_file.read_text().split()[0]
            except (OSError, IndexError):
                return None
        return "https://" + url.split("://", 1)[1] if self.secure_file.exists() else url

    @property
    def version_file(self) -> Path:
        return self.path / "engine-version"

    def data_version(self) -> str | None:
        """The engine version whose node wrote the data here (None: no data yet).  Data from
        before versions were recorded is 2.19's, the only version there was."""
        try:
            recorded = self.version_file.read_text().strip()
            if recorded:
                return recorded
        except OSError:
            pass
        return DEFAULT_VERSION if (self.path / "data").is_dir() else None

    def log_tail(self, lines: int = 25) -> str:
        out = []
        logs = [self.log_file, *sorted((self.path / "logs").glob("*.log"))]
        for f in logs:
            try:
                out.extend(f.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                pass
        return "\n".join(out[-lines:])


@dataclass(frozen=True)
class NodeState:
    """What ``status`` reports of one local node."""

    name: str
    path: Path
    pid: int | None
    url: str | None
