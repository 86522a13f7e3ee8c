"""A real OpenSearch node, or a cluster of several, on this machine, built from Maven Central and
run by a Java launcher.

The nodes are the default target for the demo and the tests.  Their state (Maven build output,
data, logs, pid and the URL each serves) lives under one state directory, so `start` can tell
what already runs there and never starts a second copy of a node.  One node lives in
``<state>/node`` (discovery type single-node, as it always did); a cluster of N lives in
``<state>/cluster/node-0 .. node-N-1``, each node a JVM with its own data directory, the nodes
finding each other over loopback transport ports that ``cluster/cluster.json`` records (so a
node restarted after a crash finds the others, and keeps its port when it is still free).
Only one of the two runs at a time.

The OpenSearch version and the Java that runs it are :mod:`engine.versions`; one node's
directory and process, :mod:`engine.node_dir`.

The state directory holds the index data, so it is private to its owner (0700).
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

from .errors import EngineError
from .node_dir import LAUNCHER_CLASS, NodeDir, NodeState, running_launchers, pid_alive, port_free, reap
from .security import SECURITY_PLUGIN_CLASS, SECURITY_PLUGIN_DIR, SecureNode, SecurityError
from .versions import DEFAULT_VERSION, ENGINE_VERSIONS, EngineVersion, engine_version, find_java

JAVA_DIR = Path(__file__).with_name("java")

PLUGIN_DIRS = ("opensearch-knn", "neural-search")
JVM_FLAGS = (
    "-Dlog4j2.disable.jmx=true",
    "-Dopensearch.set.netty.runtime.available.processors=false",
    "-Djava.awt.headless=true",
    "-XX:+UseG1GC",
    "-Dfile.encoding=UTF-8",
)
SINGLE_NODE_NAME = "cmsearch-node"
SINGLE_HEAP = "1g"
# Several JVMs share the machine: each gets less, so three fit beside the tests on 24 GB.
CLUSTER_HEAP = "512m"
MAX_NODES = 9
# Cluster nodes need fixed transport ports for their seed list.  Single nodes bind the lowest
# free port of 9300-9399, so cluster ports are taken from the top of that range down.
CLUSTER_TRANSPORT_PORTS = range(9399, 9299, -1)


def default_state_dir() -> Path:
    env = os.environ.get("CMSEARCH_ENGINE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "cmsearch" / "engine"


def _pom_digest(version: EngineVersion) -> str:
    """What ``version``'s build is made from: its pom, the sources, the config (not the other poms)."""
    h = hashlib.sha256(version.name.encode())
    for p in sorted(JAVA_DIR.rglob("*")):
        if p.is_file() and "target" not in p.parts:
            if p.parent == JAVA_DIR and p.suffix == ".xml" and p.name != version.pom:
                continue
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


@dataclass
class LocalEngine:
    """Build, start, stop and inspect the local node (or cluster of ``nodes``) under ``state_dir``.

    ``heap`` is per node; by default 1g for one node and 512m for each node of a cluster.
    ``version`` is the OpenSearch version to build and start (:data:`ENGINE_VERSIONS`); None
    means ``CMSEARCH_ENGINE_VERSION``, else the version whose data is under ``state_dir``,
    else 2.19.  ``secure`` starts the nodes with the security plugin: TLS and internal users
    (:mod:`engine.security`; 2.19 only, the 3.x build has no security plugin).
    """

    state_dir: Path = None  # type: ignore[assignment]
    http_ports: str = "9200-9299"
    heap: str | None = None
    nodes: int = 1
    version: str | None = None
    secure: bool = False

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir or default_state_dir()).expanduser().resolve()
        self._stdin_keepalive: dict[str, IO] = {}

    @property
    def engine(self) -> EngineVersion:
        """The version this engine builds and starts (resolved when first needed, so that a bad
        ``CMSEARCH_ENGINE_VERSION`` does not stop anyone from finding or stopping a node)."""
        if self.version is not None or os.environ.get("CMSEARCH_ENGINE_VERSION"):
            return engine_version(self.version)
        for nd in self._all_nodes():
            recorded = nd.data_version()
            if recorded in ENGINE_VERSIONS:
                return ENGINE_VERSIONS[recorded]
        return ENGINE_VERSIONS[DEFAULT_VERSION]

    # ---- paths -------------------------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        return self.state_dir / self.engine.build_name

    @property
    def node_dir(self) -> Path:
        """The single node's directory."""
        return self.state_dir / "node"

    @property
    def pid_file(self) -> Path:
        return self._single.pid_file

    @property
    def ready_file(self) -> Path:
        return self._single.ready_file

    @property
    def log_file(self) -> Path:
        return self._single.log_file

    @property
    def cluster_dir(self) -> Path:
        return self.state_dir / "cluster"

    @property
    def _single(self) -> NodeDir:
        return NodeDir(self.node_dir, SINGLE_NODE_NAME)

    @property
    def _cluster_file(self) -> Path:
        return self.cluster_dir / "cluster.json"

    def cluster_record(self) -> dict | None:
        """The cluster made under this state dir: nodes, cluster name, transport ports (or None)."""
        try:
            rec = json.loads(self._cluster_file.read_text())
            if isinstance(rec, dict) and isinstance(rec.get("nodes"), int):
                return rec
        except (OSError, ValueError):
            pass
        return None

    def cluster_nodes(self, n: int | None = None) -> list[NodeDir]:
        """The node directories of an ``n``-node cluster (default: the recorded one, else none)."""
        if n is None:
            rec = self.cluster_record()
            n = rec["nodes"] if rec else 0
        return [NodeDir(self.cluster_dir / f"node-{i}", f"node-{i}") for i in range(n)]

    def _all_nodes(self) -> list[NodeDir]:
        """Every node directory there is: the single node's, the recorded cluster's, and any other
        ``cluster/node-*`` (of a record since damaged) so that nothing running is ever missed."""
        found = {nd.path: nd for nd in self.cluster_nodes()}
        for p in sorted(self.cluster_dir.glob("node-*")) if self.cluster_dir.is_dir() else ():
            found.setdefault(p, NodeDir(p, p.name))
        return [self._single, *sorted(found.values(), key=lambda nd: (len(nd.name), nd.name))]

    # ---- build -------------------------------------------------------------------------
    def is_built(self) -> bool:
        marker = self.build_dir / "BUILT"
        return marker.exists() and marker.read_text().strip() == _pom_digest(self.engine)

    def java_home(self) -> Path:
        """The JDK this engine's version is built and run with (:func:`find_java`)."""
        return find_java(self.engine.java, f"OpenSearch {self.engine.opensearch}")

    def build(self, *, quiet: bool = True) -> None:
        """Run Maven once (again only when the launcher sources or this version's pom change)."""
        if self.is_built():
            return
        version = self.engine
        mvn = shutil.which("mvn")
        if not mvn:
            raise EngineError("Maven (mvn) is not on PATH; install it (apt-get install maven) to build the engine")
        java_home = self.java_home()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        # Maven writes next to the pom: copy the sources into the state dir so an installed
        # package directory is never written to.
        src = self.build_dir / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(JAVA_DIR, src, ignore=shutil.ignore_patterns("target"))
        cmd = [mvn, "-B", "-f", version.pom, "package", "-DskipTests",
               f"-Dcmsearch.build.dir={self.build_dir / 'target'}"]
        if quiet:
            cmd.insert(1, "-q")
        env = {**os.environ, "JAVA_HOME": str(java_home),
               "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(cmd, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise EngineError(f"building OpenSearch {version.opensearch} with Maven failed "
                              f"(exit {proc.returncode}):\n{tail}")
        (self.build_dir / "BUILT").write_text(_pom_digest(version))

    def classpath(self) -> list[Path]:
        target = self.build_dir / "target"
        jars: dict[str, Path] = {}
        for plugin in PLUGIN_DIRS:  # plugin zips first, so Maven-resolved jars win on a clash
            for jar in sorted((target / "plugins" / plugin).glob("*.jar")):
                jars[_jar_key(jar.name)] = jar
        for jar in sorted((target / "lib").glob("*.jar")):
            jars[_jar_key(jar.name)] = jar
        if self.secure:  # only a secured node gets the security plugin's libraries, and none it would replace
            for jar in sorted((target / "plugins" / SECURITY_PLUGIN_DIR).glob("*.jar")):
                jars.setdefault(_jar_key(jar.name), jar)
        launcher = sorted(target.glob("cmsearch-engine-*.jar"))
        if not launcher or not jars:
            raise EngineError(f"engine build output missing under {target}; run `cmsearch engine start` to build it")
        return [launcher[0], *sorted(jars.values())]

    # ---- what runs ---------------------------------------------------------------------
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

    def node_states(self) -> list[NodeState]:
        """Every local node that runs, and every node of the recorded cluster (running or not)."""
        launchers = running_launchers()
        recorded = {nd.path for nd in self.cluster_nodes()}
        out = []
        for nd in self._all_nodes():
            pid = nd.pid(launchers)
            if pid is not None or nd.path in recorded:
                out.append(NodeState(nd.name, nd.path, pid, nd.url(launchers) if pid is not None else None))
        return out

    def pid(self) -> int | None:
        """The pid of the single node running under this state dir, else of the first running
        node of its cluster; None when nothing runs."""
        launchers = running_launchers()
        for nd in self._all_nodes():
            pid = nd.pid(launchers)
            if pid is not None:
                return pid
        return None

    def url(self) -> str | None:
        """The URL of the running node (of a cluster: the first running node that serves HTTP),
        or None when no node runs under this state dir (or it has not bound its HTTP port yet)."""
        urls = self.urls()
        return urls[0] if urls else None

    def urls(self) -> list[str]:
        """The URLs of every running node, the single node or the cluster's in node order."""
        launchers = running_launchers()
        return [u for u in (nd.url(launchers) for nd in self._all_nodes()) if u]

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, *, nodes: int | None = None, timeout: float = 240.0, exit_with_parent: bool = False,
              progress=lambda msg: None) -> str:
        """Start the node, or the ``nodes``-node cluster (building first if needed), and wait
        until it is green with all its nodes.

        Returns the URL it serves (of a cluster: the first node's).  What already runs is reused,
        never started twice: nodes of the cluster that are down (killed, crashed) are started
        again and the rest kept.  Pid and READY files a killed node left are ignored.  Refuses
        a single node while a cluster runs here, and the other way round, and a cluster of
        another size than the one recorded here.  With ``exit_with_parent`` the JVMs exit when
        this Python process dies (each watches a pipe on its stdin), so tests leave no orphan.
        """
        n = self.nodes if nodes is None else nodes
        if not isinstance(n, int) or not 1 <= n <= MAX_NODES:
            raise EngineError(f"--nodes must be between 1 and {MAX_NODES}, got {n!r}")
        if self.secure and self.engine.name != DEFAULT_VERSION:
            raise EngineError(f"a secured node runs OpenSearch {DEFAULT_VERSION} only: the {self.engine.name} build "
                              "has no security plugin (start it without --secure, or with --version "
                              f"{DEFAULT_VERSION})")
        with self._lock():
            launchers = running_launchers()
            single_pid = self._single.pid(launchers)
            cluster_up = [(nd, pid) for nd in self._all_nodes()[1:] if (pid := nd.pid(launchers)) is not None]
            rec = self.cluster_record()
            if n == 1:
                if cluster_up:
                    size = rec["nodes"] if rec else len(cluster_up)
                    raise EngineError(
                        f"a {size}-node cluster runs under {self.state_dir} ({len(cluster_up)} of its nodes up: "
                        f"{', '.join(nd.name for nd, _ in cluster_up)}); stop it first with `cmsearch engine stop`, "
                        f"or start it with `cmsearch engine start --nodes {size}`")
                if single_pid is not None:
                    self._check_version(self._single, running=True)
                    self._check_security_mode([self._single])
                    return self._wait_for_running(self._single, single_pid, timeout)
                self._check_version(self._single)
                self._prepare_build(progress)
                proc = self._spawn(self._single, (), self.heap or SINGLE_HEAP, exit_with_parent)
                progress(f"starting OpenSearch {self.engine.opensearch} (pid {proc.pid})...")
                return self._wait_started([(self._single, proc)], [self._single], 1, timeout)
            if single_pid is not None:
                raise EngineError(f"a single node (pid {single_pid}) runs under {self.state_dir}; stop it first "
                                  f"with `cmsearch engine stop` to start a {n}-node cluster there")
            if rec is not None and rec["nodes"] != n:
                if cluster_up:
                    raise EngineError(
                        f"a {rec['nodes']}-node cluster runs under {self.state_dir} ({len(cluster_up)} of its "
                        f"nodes up); stop it first with `cmsearch engine stop`, or start it with "
                        f"`--nodes {rec['nodes']}`")
                raise EngineError(
                    f"the cluster data under {self.cluster_dir} is of a {rec['nodes']}-node cluster: start it with "
                    f"`--nodes {rec['nodes']}`, or delete {self.cluster_dir} to make a {n}-node cluster")
            return self._start_cluster(n, rec, cluster_up, launchers, timeout, exit_with_parent, progress)

    def _check_security_mode(self, running: list[NodeDir]) -> None:
        """Refuse to reuse running nodes started with the other security mode."""
        other = [nd.name for nd in running if nd.secure_file.exists() != self.secure]
        if other:
            what = "without" if self.secure else "with"
            raise EngineError(f"{', '.join(other)} under {self.state_dir} runs {what} security; stop it first with "
                              f"`cmsearch engine stop`, or start {'with' if not self.secure else 'without'} --secure")

    def _prepare_build(self, progress) -> None:
        if not self.is_built():
            progress("building the engine with Maven (first run only)...")
        self.build()

    def _start_cluster(self, n: int, rec: dict | None, up: list[tuple[NodeDir, int]],
                       launchers: dict[bytes, list[int]] | None, timeout: float, exit_with_parent: bool,
                       progress) -> str:
        nodes = self.cluster_nodes(n)
        running = {nd.path: pid for nd, pid in up}
        down = [nd for nd in nodes if nd.path not in running]
        for nd in nodes:
            self._check_version(nd, running=nd.path in running)
        self._check_security_mode([nd for nd, _ in up])
        for nd, pid in up:
            nd.pid_file.write_text(str(pid))  # repair a damaged or stale pid file
        if not down:
            return self._wait_started([], nodes, n, timeout)
        self._prepare_build(progress)
        self._private_dir(self.cluster_dir)
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        name = (rec or {}).get("cluster_name") or f"cmsearch-{digest}"
        ports: dict[str, int] = dict((rec or {}).get("transport_ports") or {})
        for nd in down:  # a node that is down keeps its port while it is free, else gets another
            port = ports.get(nd.name)
            if not isinstance(port, int) or not port_free(port):
                taken = {p for k, p in ports.items() if k != nd.name}
                port = next((p for p in CLUSTER_TRANSPORT_PORTS if p not in taken and port_free(p)), None)
                if port is None:
                    raise EngineError(f"no free transport port in {CLUSTER_TRANSPORT_PORTS.stop + 1}-"
                                      f"{CLUSTER_TRANSPORT_PORTS.start} on 127.0.0.1 for {nd.name}")
                ports[nd.name] = port
        rec = {"nodes": n, "cluster_name": name, "transport_ports": {nd.name: ports[nd.name] for nd in nodes}}
        tmp = self._cluster_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2))
        tmp.replace(self._cluster_file)
        seeds = ",".join(f"127.0.0.1:{ports[nd.name]}" for nd in nodes)
        managers = ",".join(nd.name for nd in nodes)
        started = []
        try:
            for nd in down:
                settings = (f"-Ecluster.name={name}", f"-Enode.name={nd.name}", "-Ediscovery.type=",
                            f"-Ediscovery.seed_hosts={seeds}", f"-Ecluster.initial_cluster_manager_nodes={managers}",
                            f"-Etransport.port={ports[nd.name]}")
                # node-0 alone may create the security index (once, on the first start), so that
                # two nodes never race to initialise it; the others read it once it is there
                started.append((nd, self._spawn(nd, settings, self.heap or CLUSTER_HEAP, exit_with_parent,
                                                init_security=nd.name == nodes[0].name)))
        except BaseException:
            self._terminate_all([p.pid for _, p in started])
            raise
        progress(f"starting OpenSearch {self.engine.opensearch}: "
                 + ", ".join(f"{nd.name} (pid {p.pid})" for nd, p in started)
                 + (f"; already running: {', '.join(nd.name for nd, _ in up)}" if up else "") + "...")
        return self._wait_started(started, nodes, n, timeout)

    def _check_version(self, nd: NodeDir, *, running: bool = False) -> None:
        """Refuse to run this engine's version on data another version wrote (or beside a node
        of another version that runs there)."""
        recorded = nd.data_version()
        want = self.engine.name
        if recorded is None or recorded == want:
            return
        if running:
            raise EngineError(f"an OpenSearch {recorded} node runs under {nd.path}; stop it first with "
                              f"`cmsearch engine stop` to start {want} there, or use another state directory "
                              f"(CMSEARCH_ENGINE_DIR) for {want}")
        raise EngineError(f"the data under {nd.path} was written by OpenSearch {recorded}: start it with "
                          f"`--version {recorded}` (CMSEARCH_ENGINE_VERSION={recorded}), or give {want} another "
                          "state directory (CMSEARCH_ENGINE_DIR): a 3.x node upgrades 2.x data for good, and 2.x cannot read 3.x data")

    def _spawn(self, nd: NodeDir, settings: tuple[str, ...], heap: str, exit_with_parent: bool,
               init_security: bool = True) -> subprocess.Popen:
        self._private_dir(nd.path)
        (nd.path / "logs").mkdir(exist_ok=True)
        # whatever an earlier node left (after kill -9) must not be read as this one's address
        nd.ready_file.unlink(missing_ok=True)
        nd.ports_file.unlink(missing_ok=True)
        cfg = nd.path / "home" / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        shutil.copy(JAVA_DIR / "config" / "log4j2.properties", cfg / "log4j2.properties")
        version = self.engine
        cp = os.pathsep.join(str(p) for p in self.classpath())
        java = self.java_home() / "bin" / "java"
        plugins: tuple[str, ...] = version.plugin_classes
        if self.secure:
            settings = (*settings, *SecureNode(self.state_dir).configure(cfg, init_index=init_security))
            plugins = (*plugins, SECURITY_PLUGIN_CLASS)
            nd.secure_file.touch()
        else:
            nd.secure_file.unlink(missing_ok=True)
        cmd = [str(java), f"-Xms{heap}", f"-Xmx{heap}", *JVM_FLAGS, *version.jvm_flags, "-cp", cp,
               LAUNCHER_CLASS, str(nd.path), self.http_ports,
               "true" if exit_with_parent else "false", *settings, *plugins]
        nd.version_file.write_text(version.name + "\n")
        fd = os.open(nd.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # also a log an older version created 0644
        log: IO = os.fdopen(fd, "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE if exit_with_parent else subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        if exit_with_parent:
            # keep the write end open for our lifetime; the JVM exits when it closes
            old = self._stdin_keepalive.pop(nd.name, None)
            if old is not None:
                old.close()
            self._stdin_keepalive[nd.name] = proc.stdin
        nd.pid_file.write_text(str(proc.pid))
        return proc

    def _wait_started(self, started: list[tuple[NodeDir, subprocess.Popen]], nodes: list[NodeDir], n: int,
                      timeout: float) -> str:
        """Wait until every one of ``nodes`` serves HTTP and answers that the cluster is green with ``n`` nodes;
        returns the first node's URL.  A node started here that exits, or the timeout, stops the
        ones started here and raises."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for nd, proc in started:
                if proc.poll() is not None:
                    nd.pid_file.unlink(missing_ok=True)
                    self._terminate_all([p.pid for _, p in started])
                    what = "the engine" if n == 1 else f"cluster node {nd.name}"
                    raise EngineError(f"{what} exited with status {proc.returncode} during start; "
                                      f"last log lines:\n{nd.log_tail()}")
            launchers = running_launchers()
            urls = [nd.url(launchers) for nd in nodes]
            # every node asked, not only the first: a secured node answers 503 until it has read
            # the security index, which a cluster can be green without
            if all(urls) and all(self._health(u, "green", nodes=n if n > 1 else None) for u in urls):
                return urls[0]  # type: ignore[return-value]
            time.sleep(0.5)
        self._terminate_all([p.pid for _, p in started])
        if n == 1:
            raise EngineError(f"the engine did not become green within {timeout:.0f}s; "
                              f"last log lines:\n{nodes[0].log_tail()}")
        tails = "\n".join(f"--- {nd.name}\n{nd.log_tail(10)}" for nd in nodes)
        raise EngineError(f"the {n}-node cluster did not become green within {timeout:.0f}s; last log lines:\n{tails}")

    def _wait_for_running(self, nd: NodeDir, pid: int, timeout: float) -> str:
        """The URL of the node that already runs (``pid``), once it is green; never a second JVM."""
        nd.pid_file.write_text(str(pid))  # repair a damaged or stale pid file
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            url = nd.url()
            if url and self._health(url, "green"):
                return url
            time.sleep(0.5)
        raise EngineError(f"a node (pid {pid}) runs under {self.state_dir} but did not answer green within "
                          f"{timeout:.0f}s; stop it with `cmsearch engine stop`. Last log lines:\n{nd.log_tail()}")

    def stop(self, *, timeout: float = 60.0) -> bool:
        """Stop every local node cleanly (SIGTERM to all, then SIGKILL after ``timeout``).
        False if none ran."""
        return bool(self.stop_nodes(timeout=timeout))

    def stop_nodes(self, *, timeout: float = 60.0) -> list[str]:
        """Like :meth:`stop`; returns the names of the nodes that were stopped."""
        with self._lock():
            launchers = running_launchers()
            running = [(nd, pid) for nd in self._all_nodes() if (pid := nd.pid(launchers)) is not None]
            self._terminate_all([pid for _, pid in running], timeout=timeout)
            for nd in self._all_nodes():
                if nd.path.is_dir():
                    nd.pid_file.unlink(missing_ok=True)
                    nd.ready_file.unlink(missing_ok=True)
            for keep in self._stdin_keepalive.values():
                keep.close()
            self._stdin_keepalive.clear()
            return [nd.name for nd, _ in running]

    @staticmethod
    def _terminate_all(pids: list[int], timeout: float = 60.0) -> None:
        """SIGTERM all at once (a cluster's nodes close in parallel), SIGKILL what is left."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        left = list(pids)
        while left and time.monotonic() < deadline:
            for pid in left:
                reap(pid)
            left = [pid for pid in left if pid_alive(pid)]
            if left:
                time.sleep(0.2)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            reap(pid)

    def log_tail(self, lines: int = 25) -> str:
        return self._single.log_tail(lines)

    def _health(self, url: str, status: str, timeout: float = 5.0, nodes: int | None = None) -> dict | None:
        query = f"wait_for_status={status}&timeout=1s" + (f"&wait_for_nodes={nodes}" if nodes else "")
        try:
            # a secured node is asked as its admin, its certificate verified against its own CA
            open_url = SecureNode(self.state_dir).admin_opener().open if url.startswith("https:") \
                else urllib.request.urlopen
            with open_url(f"{url}/_cluster/health?{query}", timeout=timeout) as r:
                body = json.loads(r.read())
            return body if not body.get("timed_out") else None
        except (urllib.error.URLError, OSError, ValueError, SecurityError):
            return None
