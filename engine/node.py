"""A real single-node OpenSearch on this machine, built from Maven Central and run by a Java launcher.

The node is the default target for the demo and the tests.  Its state (Maven build output,
data, logs, pid and the URL it serves) lives under one state directory, so `start` can tell
whether a node already runs there and never starts a second one.

The pid file is a hint, not the truth: it can be damaged, or name a pid the system has since
given to another process (after ``kill -9``).  The running node is the java process whose
command line runs the launcher on this node directory, found through ``/proc``; the pid file
is only trusted where there is no ``/proc``.  The state directory holds the index data, so it
is private to its owner (0700).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

JAVA_DIR = Path(__file__).with_name("java")
OPENSEARCH_VERSION = "2.19.1"

# Plugins loaded from the class path; ones whose classes are missing are skipped by the launcher.
PLUGIN_CLASSES = (
    "org.opensearch.transport.Netty4Plugin",
    "org.opensearch.analysis.common.CommonAnalysisPlugin",
    "org.opensearch.painless.PainlessPlugin",
    "org.opensearch.index.mapper.MapperExtrasPlugin",
    "org.opensearch.index.reindex.ReindexPlugin",
    "org.opensearch.knn.plugin.KNNPlugin",
    "org.opensearch.neuralsearch.plugin.NeuralSearch",
)
PLUGIN_DIRS = ("opensearch-knn", "neural-search")
LAUNCHER_CLASS = "org.cmsearch.engine.Launcher"
JVM_FLAGS = (
    "-Dlog4j2.disable.jmx=true",
    "-Dopensearch.set.netty.runtime.available.processors=false",
    "-Djava.awt.headless=true",
    "-XX:+UseG1GC",
    "-Dfile.encoding=UTF-8",
)


class EngineError(RuntimeError):
    """The local engine could not be built, started or stopped; the message says why."""


def default_state_dir() -> Path:
    env = os.environ.get("CMSEARCH_ENGINE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "cmsearch" / "engine"


def _pom_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(JAVA_DIR.rglob("*")):
        if p.is_file() and "target" not in p.parts:
            h.update(p.relative_to(JAVA_DIR).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _jar_key(name: str) -> str:
    """Artifact name without version, to find the same library shipped twice."""
    stem = name[:-4]
    parts = stem.split("-")
    for i, part in enumerate(parts):
        if part[:1].isdigit():
            return "-".join(parts[:i])
    return stem


def _launcher_pids(node_dir: Path) -> list[int] | None:
    """Live processes running the launcher on ``node_dir``; None where ``/proc`` cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return None
    want = os.fsencode(str(node_dir))
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and _runs_launcher(int(entry.name), want):
            found.append(int(entry.name))
    return sorted(found)


def _runs_launcher(pid: int, node_dir: bytes) -> bool:
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        i = argv.index(LAUNCHER_CLASS.encode())
    except ValueError:
        return False
    return i + 1 < len(argv) and argv[i + 1] == node_dir and _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
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


@dataclass
class LocalEngine:
    """Build, start, stop and inspect the local node under ``state_dir``."""

    state_dir: Path = None  # type: ignore[assignment]
    http_ports: str = "9200-9299"
    heap: str = "1g"

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir or default_state_dir()).expanduser().resolve()

    # ---- paths -------------------------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        return self.state_dir / "build"

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "pid"

    @property
    def ready_file(self) -> Path:
        return self.node_dir / "READY"

    @property
    def log_file(self) -> Path:
        return self.node_dir / "logs" / "launcher.out"

    # ---- build -------------------------------------------------------------------------
    def is_built(self) -> bool:
        marker = self.build_dir / "BUILT"
        return marker.exists() and marker.read_text().strip() == _pom_digest()

    def build(self, *, quiet: bool = True) -> None:
        """Run Maven once (again only when the launcher sources change)."""
        if self.is_built():
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise EngineError("Maven (mvn) is not on PATH; install it (apt-get install maven) to build the engine")
        if not shutil.which("java"):
            raise EngineError("java is not on PATH; a JDK 17 is needed (apt-get install openjdk-17-jdk-headless)")
        self.build_dir.mkdir(parents=True, exist_ok=True)
        # Maven writes next to the pom: copy the sources into the state dir so an installed
        # package directory is never written to.
        src = self.build_dir / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(JAVA_DIR, src, ignore=shutil.ignore_patterns("target"))
        cmd = [mvn, "-B", "package", "-DskipTests", f"-Dcmsearch.build.dir={self.build_dir / 'target'}"]
        if quiet:
            cmd.insert(1, "-q")
        proc = subprocess.run(cmd, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise EngineError(f"building the engine with Maven failed (exit {proc.returncode}):\n{tail}")
        (self.build_dir / "BUILT").write_text(_pom_digest())

    def classpath(self) -> list[Path]:
        target = self.build_dir / "target"
        jars: dict[str, Path] = {}
        for plugin in PLUGIN_DIRS:  # plugin zips first, so Maven-resolved jars win on a clash
            for jar in sorted((target / "plugins" / plugin).glob("*.jar")):
                jars[_jar_key(jar.name)] = jar
        for jar in sorted((target / "lib").glob("*.jar")):
            jars[_jar_key(jar.name)] = jar
        launcher = sorted(target.glob("cmsearch-engine-*.jar"))
        if not launcher or not jars:
            raise EngineError(f"engine build output missing under {target}; run `cmsearch engine start` to build it")
        return [launcher[0], *sorted(jars.values())]

    # ---- lifecycle ---------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self._private_dir(self.state_dir)
        with open(self.state_dir / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _private_dir(path: Path) -> None:
        """Create ``path`` (and parents) and make it 0700: it holds the node's data and logs."""
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)

    def pid(self) -> int | None:
        """The pid of the node running under this state dir (found by its command line), or None."""
        try:
            recorded: int | None = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            recorded = None
        running = _launcher_pids(self.node_dir)
        if running is None:  # no /proc: the pid file is all there is
            return recorded if recorded is not None and _pid_alive(recorded) else None
        if recorded in running:
            return recorded
        return running[0] if running else None

    def url(self) -> str | None:
        """The URL of the running node, or None when no node runs under this state dir (or it has
        not bound its HTTP port yet)."""
        if self.pid() is None:
            return None
        try:
            url = self.ready_file.read_text().strip()
        except OSError:
            url = ""
        if url:
            return url
        # the READY file is gone (removed by hand or by an old launcher): the node's ports file
        try:
            first = (self.node_dir / "logs" / "http.ports").read_text().split()[0]
        except (OSError, IndexError):
            return None
        return f"http://{first}"

    def start(self, *, timeout: float = 240.0, exit_with_parent: bool = False,
              progress=lambda msg: None) -> str:
        """Start the node (building it first if needed) and wait until it is green.

        Returns the URL it serves.  If a node already runs under this state dir, returns its
        URL instead of starting a second one.  With ``exit_with_parent`` the JVM exits when this
        Python process dies (it watches a pipe on its stdin), so tests leave no orphan.
        """
        with self._lock():
            running = self.pid()
            if running is not None:
                return self._wait_for_running(running, timeout)
            if not self.is_built():
                progress("building the engine with Maven (first run only)...")
            self.build()
            self._private_dir(self.node_dir)
            (self.node_dir / "logs").mkdir(exist_ok=True)
            # whatever an earlier node left (after kill -9) must not be read as this one's address
            self.ready_file.unlink(missing_ok=True)
            (self.node_dir / "logs" / "http.ports").unlink(missing_ok=True)
            cfg = self.node_dir / "home" / "config"
            cfg.mkdir(parents=True, exist_ok=True)
            shutil.copy(JAVA_DIR / "config" / "log4j2.properties", cfg / "log4j2.properties")
            cp = os.pathsep.join(str(p) for p in self.classpath())
            cmd = ["java", f"-Xms{self.heap}", f"-Xmx{self.heap}", *JVM_FLAGS, "-cp", cp,
                   LAUNCHER_CLASS, str(self.node_dir), self.http_ports,
                   "true" if exit_with_parent else "false", *PLUGIN_CLASSES]
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)  # also a log an older version created 0644
            log: IO = os.fdopen(fd, "ab")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if exit_with_parent else subprocess.DEVNULL,
                                    start_new_session=True)
            log.close()
            if exit_with_parent:
                # keep the write end open for our lifetime; the JVM exits when it closes
                self._stdin_keepalive = proc.stdin
            self.pid_file.write_text(str(proc.pid))
            progress(f"starting OpenSearch {OPENSEARCH_VERSION} (pid {proc.pid})...")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    self.pid_file.unlink(missing_ok=True)
                    raise EngineError(f"the engine exited with status {proc.returncode} during start; "
                                      f"last log lines:\n{self.log_tail()}")
                if self.ready_file.exists():
                    url = self.ready_file.read_text().strip()
                    if self._health(url, "green"):
                        return url
                time.sleep(0.5)
            self._terminate(proc.pid)
            raise EngineError(f"the engine did not become green within {timeout:.0f}s; last log lines:\n{self.log_tail()}")

    def _wait_for_running(self, pid: int, timeout: float) -> str:
        """The URL of the node that already runs (``pid``), once it is green; never a second JVM."""
        self.pid_file.write_text(str(pid))  # repair a damaged or stale pid file
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            url = self.url()
            if url and self._health(url, "green"):
                return url
            time.sleep(0.5)
        raise EngineError(f"a node (pid {pid}) runs under {self.state_dir} but did not answer green within "
                          f"{timeout:.0f}s; stop it with `cmsearch engine stop`. Last log lines:\n{self.log_tail()}")

    def stop(self, *, timeout: float = 60.0) -> bool:
        """Stop the node cleanly (SIGTERM, then SIGKILL after ``timeout``). False if none ran."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                self.ready_file.unlink(missing_ok=True)
                return False
            self._terminate(pid, timeout=timeout)
            self.pid_file.unlink(missing_ok=True)
            self.ready_file.unlink(missing_ok=True)
            return True

    def _terminate(self, pid: int, timeout: float = 60.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            try:  # reap if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 25) -> str:
        out = []
        for f in (self.log_file, self.node_dir / "logs" / "cmsearch-local.log"):
            try:
                out.extend(f.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                pass
        return "\n".join(out[-lines:])

    @staticmethod
    def _health(url: str, status: str, timeout: float = 5.0) -> dict | None:
        try:
            with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status={status}&timeout=1s",
                                        timeout=timeout) as r:
                body = json.loads(r.read())
            return body if not body.get("timed_out") else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

