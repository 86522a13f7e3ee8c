"""Connecting to a user's cluster: credentials never shown, TLS verified unless turned off."""
from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from cmsearch.cli import cli
from engine.client import ConnectionSettings, redact_urls

SECRET = "hunter2-s3cret"


def test_user_info_moves_out_of_the_url_and_out_of_repr():
    conn = ConnectionSettings.resolve(f"https://alice:{SECRET}@search.example.com:9200")
    assert conn.url == "https://search.example.com:9200"
    assert conn.user == "alice" and conn.password == SECRET
    assert SECRET not in repr(conn) and conn.verify_certs
    assert redact_urls(f"GET https://bob:{SECRET}@h:1/x failed") == "GET https://***@h:1/x failed"
    assert conn.redact(f"auth {SECRET} rejected") == "auth *** rejected"


@pytest.mark.parametrize("url", [f"ftp://u:{SECRET}@127.0.0.1:9/x", f"s3://AKIA:{SECRET}@bucket/key",
                                 f"redis://:{SECRET}@10.0.0.1:6379/0", f"HTTPS://u:{SECRET}@h", f"http://u:p@ss{SECRET}@h/",
                                 f"postgresql+psycopg://u:{SECRET}@db/x"])
def test_user_info_is_redacted_whatever_the_scheme(url):
    text = redact_urls(f"cannot use '{url}', sorry")
    assert SECRET not in text and "***@" in text and text.endswith("', sorry")


def test_redaction_leaves_urls_without_user_info_alone():
    text = "see https://h:9200/_cat?v&q=a@b.c and mailto:x@y.z or user@example.com, /tmp/a@b.png"
    assert redact_urls(text) == text


def test_a_non_http_url_with_a_password_is_not_shown(monkeypatch):
    """Issue 15 item 10: `engine status --url ftp://u:SECRET@127.0.0.1:9` printed the password."""
    res = CliRunner().invoke(cli, ["engine", "status", "--url", f"ftp://u:{SECRET}@127.0.0.1:9"])
    assert res.exit_code == 2 and "not an http(s) URL" in res.output
    assert SECRET not in res.output and "ftp://***@127.0.0.1:9" in res.output


def test_plugin_ingest_redacts_without_the_engine_node():
    import subprocess
    import sys

    code = ("import sys, plugin_ingest.fetch, plugin_ingest.ingestor; "
            "assert 'engine.node' not in sys.modules, 'engine.node imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_password_from_the_environment_is_not_in_cli_errors(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_USER", "alice")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", SECRET)
    for url in ("http://127.0.0.1:1", f"http://alice:{SECRET}@127.0.0.1:1"):
        res = CliRunner().invoke(cli, ["index", "stats", "products", "--url", url])
        assert res.exit_code != 0
        assert SECRET not in res.output and "Error" in res.output


class ClusterRoot(http.server.BaseHTTPRequestHandler):
    """Answers GET like a cluster's root (its version)."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"version": {"number": "2.19.1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A local HTTPS endpoint with a self-signed certificate, answering like a cluster's root."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClusterRoot)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", d / "cert.pem"
    server.shutdown()


def test_tls_certificates_are_verified_by_default(tls_server):
    url, _ = tls_server
    client = ConnectionSettings.resolve(url, timeout=5).client()
    with pytest.raises(OSConnectionError):
        client.info()


def test_tls_with_the_right_ca_or_insecure_connects(tls_server):
    url, cert = tls_server
    assert ConnectionSettings.resolve(url, ca_certs=str(cert), timeout=5).client().info()["version"]["number"] == "2.19.1"
    assert ConnectionSettings.resolve(url, insecure=True, timeout=5).client().info()["version"]["number"] == "2.19.1"


def test_threads_sharing_a_client_reuse_its_connections():
    """Six threads, thirty requests, one client: at most one connection per thread is opened (urllib3's
    own default pool of one opened a new connection for almost every concurrent request)."""
    from concurrent.futures import ThreadPoolExecutor

    opened: list[tuple] = []

    class Root(ClusterRoot):
        protocol_version = "HTTP/1.1"   # keep-alive

        def setup(self):
            super().setup()
            opened.append(self.client_address)

        def do_GET(self):  # noqa: N802
            time.sleep(0.05)            # the six threads' requests overlap
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ConnectionSettings.resolve(f"http://127.0.0.1:{server.server_address[1]}", timeout=5).client()
        barrier = threading.Barrier(6)

        def work(k):
            barrier.wait()
            answers = []
            for i in range(5):
                answers.append(client.info()["version"]["number"])
                time.sleep(0.01 * ((k + i) % 3))   # work between calls (encoding, fusion)
            return answers

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = [v for run in pool.map(work, range(6)) for v in run]
    finally:
        server.shutdown()
    assert answers == ["2.19.1"] * 30
    assert len(opened) <= 6, len(opened)
