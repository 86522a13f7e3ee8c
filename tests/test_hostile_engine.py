"""The engine's lifecycle against a hostile world (issue 15, items 12, 14 and 15).

- With no cluster named and the local node down, commands refuse to use whatever answers on the
  default port (a plain local HTTP server pretends to be OpenSearch here); with --url they use it.
- A damaged or stale pid file does not orphan the running node: `start` finds it by its command
  line and returns its URL without a second JVM, `stop` stops it; after `kill -9` with the pid
  file naming someone else's process, `start` starts a new node.
- The state directory is private (0700) and the launcher log 0600.

The node tests run their own node under a temporary state directory (they kill it and damage
its files), sharing the Maven build of the test engine; they start a JVM twice in all.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmsearch.cli import cli
from engine import LocalEngine

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- a stranger on the port
class _FakeOpenSearch:
    """Answers like a green OpenSearch 2.19 root and health; refuses everything else; counts requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self):
                outer.requests.append(f"{self.command} {self.path}")
                if self.path == "/":
                    body, code = {"version": {"number": "2.19.1", "distribution": "opensearch"}}, 200
                elif self.path.startswith("/_cluster/health"):
                    body, code = {"status": "green", "timed_out": False}, 200
                else:
                    body, code = {"error": "not here", "status": 404}, 404
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def stranger(monkeypatch, tmp_path):
    """A fake OpenSearch where the old code looked when no node ran, and no local node."""
    import engine.client

    fake = _FakeOpenSearch()
    monkeypatch.setenv("CMSEARCH_ENGINE_DIR", str(tmp_path / "engine"))   # no node runs there
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    # the old code fell back to a fixed http://127.0.0.1:9200; point that fallback at the stranger
    monkeypatch.setattr(engine.client, "DEFAULT_URL", fake.url, raising=False)
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_commands_refuse_a_stranger_without_url(stranger, tmp_path):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"id": "1", "title": "Chair"}) + "\n")
    for args in (["engine", "status"], ["index", "stats", "products"], ["index", "create", "products"],
                 ["ingest", str(catalog), "--index", "products", "--create", "--models", str(tmp_path / "none"),
                  "--no-progress"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1, (args, res.output)
        assert "local engine" in res.output and "is not running" in res.output and "--url" in res.output, args
        assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert stranger.requests == []
    # a dry run needs no cluster and still works
    res = CliRunner().invoke(cli, ["ingest", str(catalog), "--index", "products", "--dry-run", "--no-progress"])
    assert res.exit_code == 0, res.output


def test_an_explicit_url_is_used(stranger):
    res = CliRunner().invoke(cli, ["engine", "status", "--url", stranger.url, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["url"] == stranger.url and out["health"] == "green" and out["local_node_pid"] is None
    assert "GET /_cluster/health" in stranger.requests


# ---------------------------------------------------------------- a real node under a temporary state dir
def _jvms(node_dir: Path) -> list[int]:
    """Live launcher JVMs on ``node_dir``, counted independently of the code under test."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"org.cmsearch.engine.Launcher" in argv and str(node_dir).encode() in argv and state != b"Z":
            found.append(int(d.name))
    return found


def _shared_build() -> Path:
    """The test engine's Maven build (built here if the session has not built it yet)."""
    test_dir = Path(os.environ.get("CMSEARCH_TEST_ENGINE_DIR", REPO / ".state" / "test-engine"))
    eng = LocalEngine(state_dir=test_dir)
    eng.build()
    return eng.build_dir


@pytest.fixture(scope="module")
def own_engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("hostile-engine")
    os.chmod(state, 0o755)                          # as the old code left it: start must make it private
    (state / "build").symlink_to(_shared_build(), target_is_directory=True)
    eng = LocalEngine(state_dir=state, heap="512m")
    yield eng
    eng.stop()


@pytest.fixture
def running(own_engine):
    """The module's node, started when a test before stopped or killed it."""
    own_engine.start(exit_with_parent=True, timeout=300)
    return own_engine


def _green(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_cluster/health", timeout=10) as r:
        return json.loads(r.read())["status"] == "green"


def test_state_dir_is_private(running):
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(running.state_dir) == 0o700
    assert mode(running.node_dir) == 0o700
    assert mode(running.log_file) == 0o600


def test_start_after_kill_9_with_a_reused_pid_starts_a_new_node(running, stranger_pid):
    old_pid, old_url = running.pid(), running.url()
    os.kill(old_pid, signal.SIGKILL)
    os.waitpid(old_pid, 0)                            # our child: reap it
    # the pid file now names a live process that is not the node (pids are reused); READY is stale
    running.pid_file.write_text(str(stranger_pid))
    assert running.ready_file.read_text().strip() == old_url
    assert running.pid() is None and running.url() is None
    url = running.start(exit_with_parent=True, timeout=300)
    new_pid = running.pid()
    assert new_pid not in (None, old_pid, stranger_pid) and _jvms(running.node_dir) == [new_pid]
    assert _green(url)


def test_damaged_pid_file_does_not_orphan_the_node(running, stranger_pid, monkeypatch):
    pid, url = running.pid(), running.url()
    assert _jvms(running.node_dir) == [pid]
    for damage in ("garbage\n", "", str(stranger_pid)):
        running.pid_file.write_text(damage)
        other = LocalEngine(state_dir=running.state_dir)       # as a second `cmsearch engine start` sees it
        assert other.pid() == pid and other.url() == url
        t = time.monotonic()
        assert other.start(timeout=60, exit_with_parent=True) == url   # the running node, no second JVM
        assert time.monotonic() - t < 30
        assert _jvms(running.node_dir) == [pid]
        assert running.pid_file.read_text().strip() == str(pid)  # repaired
        assert running.ready_file.read_text().strip() == url     # not deleted
    # with the pid file and READY both gone, the node is still found, and its port
    running.pid_file.unlink()
    running.ready_file.unlink()
    assert running.url() == url
    monkeypatch.setenv("CMSEARCH_ENGINE_DIR", str(running.state_dir))
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    res = CliRunner().invoke(cli, ["engine", "status", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["local_node_pid"] == pid, res.output
    running.pid_file.write_text("12x")
    res = CliRunner().invoke(cli, ["engine", "stop"])
    assert res.exit_code == 0 and res.output.strip() == "stopped", res.output
    deadline = time.monotonic() + 30
    while _jvms(running.node_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _jvms(running.node_dir) == [] and running.url() is None
    res = CliRunner().invoke(cli, ["engine", "stop"])
    assert res.output.strip() == "no local node was running"
