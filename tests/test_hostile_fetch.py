"""The fetch policy: what a catalog's images may make the loader read (issue 15, item 13).

Every refusal and every allowance is shown against real local servers on 127.0.0.1 (and one on
127.0.0.2, a loopback address the policy tells apart from 127.0.0.1 with --allow-net); each server
counts the requests it got, so a refusal is shown to happen *before* anything is sent.
"""
from __future__ import annotations

import io
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from plugin_ingest.fetch import FetchError, FetchPolicy, ImageFetcher, address_class
from plugin_ingest.ingestor import IngestOptions, Ingestor
from plugin_ingest.rejects import read_rejects

SECRET = "hunter2-s3cret"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


class _Server:
    """A local HTTP server that records every request (path and Host header)."""

    def __init__(self, host: str = "127.0.0.1", routes: dict | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        self.routes = routes or {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.requests.append((self.path, self.headers.get("Host", "")))
                route = outer.routes.get(self.path)
                if route is None:
                    body = _png()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif route[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", route[1])
                    self.end_headers()
                elif route[0] == "status":
                    self.send_response(route[1], route[2])   # a reason phrase chosen by the server
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def other_loopback():
    """A server on 127.0.0.2: loopback too, but outside an --allow-net 127.0.0.1/32."""
    try:
        s = _Server("127.0.0.2")
    except OSError as exc:
        pytest.skip(f"127.0.0.2 cannot be bound here: {exc}")
    yield s
    s.close()


LOCAL_ONLY = FetchPolicy(allow_networks=("127.0.0.1/32",))


def _refused(fetcher: ImageFetcher, source: str) -> str:
    with pytest.raises(FetchError) as e:
        fetcher.fetch(source)
    assert "refused" in e.value.reason, e.value.reason
    return e.value.reason


# ---------------------------------------------------------------- local files
def test_local_files_are_confined_to_the_catalog_directory(tmp_path):
    cat = tmp_path / "catalog"
    (cat / "img").mkdir(parents=True)
    (cat / "img" / "a.png").write_bytes(_png())
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    os.symlink(outside / "key.pem", cat / "img" / "link.png")          # a link out of the folder
    os.symlink(outside, cat / "img" / "dirlink")
    f = ImageFetcher(cat)
    assert f.fetch("img/a.png") == _png()
    assert f.fetch(str(cat / "img" / "a.png")) == _png()                # absolute, but inside
    assert f.fetch(f"file://{cat}/img/a.png") == _png()
    for source in ("/etc/shadow", "/etc/passwd", "../private/key.pem", "img/../../private/key.pem",
                   "img/link.png", "img/dirlink/key.pem", f"file://{outside}/key.pem", "file:///etc/passwd",
                   "~/.ssh/id_rsa"):
        reason = _refused(f, source)
        assert "outside the catalog's directory" in reason and "--allow-dir" in reason
    # a refusal does not tell whether a file outside exists
    assert _refused(f, "/etc/passwd") == _refused(f, "/etc/no-such-file-here")
    assert "another host" in _refused(f, "file://fileserver/share/a.png")


def test_allowed_directories_extend_the_confinement(tmp_path):
    cat, shared = tmp_path / "catalog", tmp_path / "shared"
    cat.mkdir()
    shared.mkdir()
    (shared / "b.png").write_bytes(_png())
    os.symlink(shared / "b.png", cat / "link.png")
    f = ImageFetcher(cat, policy=FetchPolicy(allow_dirs=(shared,)))
    assert f.fetch(str(shared / "b.png")) == _png()
    assert f.fetch("link.png") == _png()                 # the link's target is in an allowed directory
    assert "and the allowed directories" in _refused(f, "/etc/passwd")


def test_other_schemes_are_refused_and_their_credentials_hidden(tmp_path):
    f = ImageFetcher(tmp_path)
    for source in (f"ftp://u:{SECRET}@127.0.0.1:21/a.jpg", "gopher://127.0.0.1:70/x", f"s3://key:{SECRET}@bucket/a.jpg",
                   "dict://127.0.0.1:11211/stats"):
        with pytest.raises(FetchError) as e:
            f.fetch(source)
        assert "refused" in e.value.reason and "URLs are not fetched" in e.value.reason
        assert SECRET not in str(e.value)


# ---------------------------------------------------------------- http: addresses
def test_private_addresses_are_refused_by_default_and_nothing_is_sent(server, tmp_path):
    f = ImageFetcher(tmp_path, connect_timeout=1)
    reason = _refused(f, f"{server.url}/a.png")
    assert "127.0.0.1, a loopback address" in reason and "--allow-private-urls" in reason
    for url in ("http://10.1.2.3/a.png", "http://192.168.0.1/a.png", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:9200/", "http://[::ffff:127.0.0.1]:9200/", "http://0.0.0.0:9200/",
                "http://224.0.0.1/a.png", "http://100.64.0.1/a.png", f"http://u:{SECRET}@127.0.0.1:9200/"):
        with pytest.raises(FetchError) as e:
            f.fetch(url)
        assert "refused" in e.value.reason and SECRET not in str(e.value)
    assert server.requests == []


def test_address_classes():
    import ipaddress

    kinds = {a: address_class(ipaddress.ip_address(a)) for a in
             ("8.8.8.8", "2606:4700::1111", "127.0.0.1", "10.0.0.1", "169.254.169.254", "fe80::1", "239.1.1.1",
              "0.0.0.0", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::", "100.64.0.1")}
    assert kinds["8.8.8.8"] is None and kinds["2606:4700::1111"] is None
    assert kinds["127.0.0.1"] == "loopback" and kinds["169.254.169.254"] == "link-local"
    assert kinds["10.0.0.1"] == kinds["::ffff:10.0.0.1"] == kinds["64:ff9b::a00:1"] == kinds["2002:a00:1::"] == "private"
    assert kinds["fe80::1"] == "link-local" and kinds["239.1.1.1"] == "multicast"
    assert kinds["0.0.0.0"] == "unspecified" and kinds["100.64.0.1"] == "non-public"


def test_allow_private_urls_and_allow_net_let_a_local_server_through(server, tmp_path):
    assert ImageFetcher(tmp_path, policy=FetchPolicy(allow_private_urls=True)).fetch(f"{server.url}/a.png") == _png()
    assert ImageFetcher(tmp_path, policy=LOCAL_ONLY).fetch(f"{server.url}/b.png") == _png()
    assert [p for p, _ in server.requests] == ["/a.png", "/b.png"]


def test_allow_net_allows_only_that_network(other_loopback, tmp_path):
    reason = _refused(ImageFetcher(tmp_path, policy=LOCAL_ONLY), f"{other_loopback.url}/a.png")
    assert "127.0.0.2" in reason
    assert other_loopback.requests == []


# ---------------------------------------------------------------- http: DNS answers
def test_the_dns_answer_is_checked_not_the_name(server, tmp_path):
    """`localhost` is a name, not an address: its answer (loopback) is what is refused."""
    reason = _refused(ImageFetcher(tmp_path), f"http://localhost:{server.port}/a.png")
    assert "localhost (127.0.0.1" in reason or "localhost (::1" in reason
    answers = {"images.example.com": ["127.0.0.1"], "mixed.example.com": ["93.184.216.34", "127.0.0.1"]}
    policy = FetchPolicy(resolve=lambda host, port: answers[host])
    reason = _refused(ImageFetcher(tmp_path, policy=policy), f"http://images.example.com:{server.port}/a.png")
    assert "images.example.com (127.0.0.1), a loopback address" in reason
    # one private answer among public ones is enough to refuse
    assert "mixed.example.com (127.0.0.1)" in _refused(ImageFetcher(tmp_path, policy=policy),
                                                       f"http://mixed.example.com:{server.port}/a.png")
    assert server.requests == []


def test_the_connection_goes_to_the_checked_address(server, tmp_path):
    """Resolve once, check, connect to that address: a second lookup (DNS rebinding) never happens.

    The resolver answers 127.0.0.1 (allowed) the first time and 127.0.0.2 (refused) after that; the
    name does not exist in real DNS, so the fetch can only succeed through the checked address, and
    the server sees the name in the Host header.
    """
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["127.0.0.2"]

    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), resolve=rebinding)
    assert ImageFetcher(tmp_path, policy=policy).fetch(f"http://cdn.rebind.invalid:{server.port}/a.png") == _png()
    assert calls == ["cdn.rebind.invalid"]
    assert server.requests == [("/a.png", f"cdn.rebind.invalid:{server.port}")]


# ---------------------------------------------------------------- http: redirects
def test_every_redirect_is_checked_again(server, other_loopback, tmp_path):
    server.routes.update({
        "/to-other": ("redirect", f"{other_loopback.url}/secret"),
        "/to-name": ("redirect", f"http://internal.example.com:{other_loopback.port}/secret"),
        "/to-file": ("redirect", "file:///etc/passwd"),
        "/to-ftp": ("redirect", f"ftp://u:{SECRET}@127.0.0.1/x"),
        "/to-ok": ("redirect", "/a.png"),
    })
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",),
                         resolve=lambda host, port: {"internal.example.com": ["127.0.0.2"]}[host])
    f = ImageFetcher(tmp_path, policy=policy)
    assert f.fetch(f"{server.url}/to-ok") == _png()                     # allowed -> allowed: followed
    assert "redirected to 127.0.0.2, a loopback address" in _refused(f, f"{server.url}/to-other")
    assert "redirected to internal.example.com (127.0.0.2)" in _refused(f, f"{server.url}/to-name")
    assert "redirected to file://" in _refused(f, f"{server.url}/to-file")
    reason = _refused(f, f"{server.url}/to-ftp")
    assert "redirected to ftp://" in reason and SECRET not in reason
    assert other_loopback.requests == []                                # never reached


# ---------------------------------------------------------------- reasons never quote what came back
def test_reasons_do_not_echo_what_a_server_sent(server, tmp_path):
    banner = socket.socket()
    banner.bind(("127.0.0.1", 0))
    banner.listen(4)

    def serve_banner():
        while True:
            try:
                c, _ = banner.accept()
            except OSError:
                return
            c.sendall(b"SSH-2.0-OpenSSH_LEAKED_BANNER\r\n")
            c.close()

    threading.Thread(target=serve_banner, daemon=True).start()
    server.routes["/err"] = ("status", 500, "LEAKED_REASON token=abc")
    f = ImageFetcher(tmp_path, policy=FetchPolicy(allow_private_urls=True), read_timeout=2)
    try:
        with pytest.raises(FetchError) as e:
            f.fetch(f"http://127.0.0.1:{banner.getsockname()[1]}/")
        assert "LEAKED" not in str(e.value) and "not HTTP" in e.value.reason
        with pytest.raises(FetchError) as e:
            f.fetch(f"{server.url}/err")
        assert e.value.reason == "HTTP 500 Internal Server Error"
    finally:
        banner.close()


# ---------------------------------------------------------------- through the load and the command
def _catalog(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_a_dry_run_load_rejects_what_the_policy_refuses(server, tmp_path):
    (tmp_path / "ok.png").write_bytes(_png())
    cat = _catalog(tmp_path / "c.jsonl", [
        {"id": "ok", "title": "Local photo", "images": ["ok.png"]},
        {"id": "shadow", "title": "Reads a system file", "images": ["/etc/shadow"]},
        {"id": "probe", "title": "Probes the engine", "images": [f"{server.url}/_cat/indices"]},
    ])
    opts = IngestOptions(index="x", dry_run=True, progress=False, image_errors="reject",
                         rejects_path=tmp_path / "r.jsonl", checkpoint_path=tmp_path / "ck.json")
    report = Ingestor(cat, opts).run()
    assert report.counts.rejected == 2
    reasons = {e["id"]: e["reason"] for e in read_rejects(tmp_path / "r.jsonl")}
    assert "outside the catalog's directory" in reasons["shadow"]
    assert "loopback address" in reasons["probe"]
    assert server.requests == []


def test_cli_options_allow_dirs_and_private_urls(server, tmp_path):
    from cmsearch.cmd_ingest import ingest

    cat_dir, shared = tmp_path / "cat", tmp_path / "shared"
    cat_dir.mkdir()
    shared.mkdir()
    (shared / "s.png").write_bytes(_png())
    cat = _catalog(cat_dir / "c.jsonl", [{"id": "s", "title": "Shared photo", "images": [str(shared / "s.png")]},
                                         {"id": "h", "title": "Local server", "images": [f"{server.url}/h.png"]}])
    args = [str(cat), "--index", "x", "--dry-run", "--no-progress", "--json", "--image-errors", "reject",
            "--rejects", str(tmp_path / "r.jsonl")]
    res = CliRunner().invoke(ingest, args)
    assert res.exit_code == 1 and json.loads(res.stdout)["counts"]["rejected"] == 2, res.output
    assert server.requests == []
    res = CliRunner().invoke(ingest, args + ["--allow-dir", str(shared), "--allow-private-urls"])
    assert res.exit_code == 0 and json.loads(res.stdout)["counts"]["rejected"] == 0, res.output
    res = CliRunner().invoke(ingest, args + ["--allow-net", "127.0.0.1/32", "--allow-dir", str(shared)])
    assert res.exit_code == 0, res.output
    assert [p for p, _ in server.requests] == ["/h.png", "/h.png"]
    res = CliRunner().invoke(ingest, args + ["--allow-net", "not-a-network"])
    assert res.exit_code == 2 and "not-a-network" in res.output
