"""Security the way production clusters run (issue 14, section 2), on a real secured node.

One JVM for the module: a local node started with the security plugin (``LocalEngine(secure=True)``:
TLS on HTTP and transport with a CA made at its first start, internal users and the least-privilege
roles of :mod:`engine.security`).  Commands run as the user the test names, the way a deployment
would run them, and every output, log, checkpoint and rejects file is searched for the passwords
and the private keys at the end.
"""
from __future__ import annotations

import json
import re
import stat
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from recording_client import RecordingClient
from secure_helpers import (ADMIN, EVENTS, INGEST, MODELS, SEARCH, client_for, make_cli, running_secure_engine,
                            one_line_error, places_with_secrets, secret_strings, write_catalog)
from secure_helpers import password_files as write_password_files

pytestmark = [pytest.mark.engine, pytest.mark.models]

SUFFIX = uuid.uuid4().hex[:8]
PRODUCTS = f"products-sec-{SUFFIX}"          # inside the roles' products-* pattern
OTHER = f"other-sec-{SUFFIX}"                # outside every role's patterns
EVENTS_INDEX = f"cmsearch-events-sec-{SUFFIX}"

# every text a command printed, every file it wrote: searched for secrets at the end
OUTPUTS: list[str] = []
WRITTEN: list[Path] = []
cli = make_cli(OUTPUTS)


@pytest.fixture(scope="module")
def secure_engine():
    yield from running_secure_engine("CMSEARCH_TEST_SECURE_DIR", "test-secure-engine", timeout=300, heap="768m")


@pytest.fixture(scope="module")
def sec(secure_engine):
    from engine.security import SecureNode

    return SecureNode(secure_engine.state_dir)


@pytest.fixture(scope="module")
def url(secure_engine):
    u = secure_engine.url()
    assert u and u.startswith("https://127.0.0.1:")
    return u


@pytest.fixture(scope="module")
def password_files(sec, tmp_path_factory):
    return write_password_files(sec, tmp_path_factory.mktemp("pw"))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"))


# ---------------------------------------------------------------- TLS and the node's files
def test_node_serves_tls_only_with_private_keys(secure_engine, sec, url):
    assert stat.S_IMODE(secure_engine.state_dir.stat().st_mode) == 0o700
    keys = [sec.dir / "ca-key.pem", sec.dir / "node-key.pem", sec.credentials_file,
            *secure_engine.node_dir.glob("home/config/*key*.pem")]
    assert len(keys) == 4
    for f in keys:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for f in (secure_engine.node_dir / "home" / "config" / "opensearch-security").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f      # internal_users.yml holds the hashes
    # verified against its own CA; plain HTTP and the system's CAs are refused
    ctx = sec.ssl_context()
    with pytest.raises(urllib.error.HTTPError) as err:      # TLS fine, but no credentials: 401
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert err.value.code == 401
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=10)              # not trusted without its CA
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(url.replace("https:", "http:"), timeout=10)
    assert client_for(url, sec, ADMIN).cluster.health()["status"] in ("green", "yellow")


def test_commands_fail_clearly_with_a_wrong_ca_password_or_no_credentials(url, sec, password_files, tmp_path):
    from cryptography import x509  # noqa: F401 - the test makes a CA of its own
    from engine.security import _make_ca
    from cryptography.hazmat.primitives import serialization

    _, other_ca = _make_ca()
    wrong_ca = tmp_path / "other-ca.pem"
    wrong_ca.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    good = ("--url", url, "--ca-certs", str(sec.ca_file))
    for cmd in (("engine", "status"), ("index", "stats", PRODUCTS), ("search", "连衣裙", "--index", PRODUCTS, "--no-models")):
        msg = one_line_error(cli(*cmd, "--url", url, "--ca-certs", str(wrong_ca), user=ADMIN,
                                 password_file=password_files[ADMIN]))
        assert "could not be verified against the CA in" in msg and str(wrong_ca) in msg, msg
        msg = one_line_error(cli(*cmd, *good, user=ADMIN, env={"OPENSEARCH_PASSWORD": "not-the-password"}))
        assert "refused the credentials of user 'admin' (401)" in msg, msg
        msg = one_line_error(cli(*cmd, *good))
        assert "asks for credentials and none were given" in msg, msg
    # without --ca-certs the system's CAs do not know this node
    msg = one_line_error(cli("index", "stats", PRODUCTS, "--url", url, user=ADMIN, password_file=password_files[ADMIN]))
    assert "could not be verified against the system's CA certificates" in msg
    # a password file that cannot be read is a usage error naming the file, not a traceback
    proc = cli("index", "stats", PRODUCTS, *good, "--user", ADMIN, "--password-file", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "cannot read the password file" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- ingest user
def test_ingest_user_creates_and_loads_but_touches_nothing_else(url, sec, password_files, catalog, tmp_path):
    from opensearchpy.exceptions import AuthorizationException

    good = ("--url", url, "--ca-certs", str(sec.ca_file))
    rejects, checkpoint = tmp_path / "rejects.jsonl", tmp_path / "checkpoint.json"
    WRITTEN.extend([rejects, checkpoint])
    proc = cli("index", "create", PRODUCTS, "--models", str(MODELS), *good, user=INGEST,
               password_file=password_files[INGEST])
    assert proc.returncode == 0, proc.stderr
    assert "search pipelines not put (this user may not create them)" in proc.stderr
    load = ("ingest", str(catalog), "--index", PRODUCTS, "--models", str(MODELS), "--rejects", str(rejects),
            "--checkpoint", str(checkpoint), *good)
    proc = cli(*load, user=INGEST, password_file=password_files[INGEST])
    assert proc.returncode == 1, proc.stderr          # one record rejected, the rest loaded
    assert "Traceback" not in proc.stderr
    assert json.loads(rejects.read_text().splitlines()[0])["line"] == 9
    admin = client_for(url, sec, ADMIN)
    admin.indices.refresh(index=PRODUCTS)
    assert admin.count(index=PRODUCTS)["count"] == 8
    # a reload reads the content hashes back (multi-get) and skips every product
    proc = cli(*load, "--accept-rejects", user=INGEST, password_file=password_files[INGEST])
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"unchanged\D+8", proc.stdout + proc.stderr), proc.stdout + proc.stderr

    admin.indices.create(index=OTHER, body={"settings": {"number_of_replicas": 0},
                                            "mappings": {"properties": {"t": {"type": "keyword"}}}})
    admin.index(index=OTHER, id="1", body={"t": "x"}, refresh=True)
    ingest = client_for(url, sec, INGEST)
    for attempt in (lambda: ingest.search(index=OTHER), lambda: ingest.index(index=OTHER, body={"t": "y"}),
                    lambda: ingest.indices.create(index=f"{OTHER}-new"),
                    lambda: ingest.transport.perform_request("PUT", "/_search/pipeline/x",
                                                             body={"phase_results_processors": []})):
        with pytest.raises(AuthorizationException):
            attempt()
    # ... and its load cannot go to another index
    proc = cli("ingest", str(catalog), "--index", OTHER, "--models", str(MODELS), "--rejects", str(rejects),
               "--checkpoint", str(tmp_path / "other.ckpt"), *good, user=INGEST, password_file=password_files[INGEST])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert admin.count(index=OTHER)["count"] == 1


# ---------------------------------------------------------------- search user
def test_search_user_runs_every_profile_without_cluster_privileges(url, sec, password_files, catalog):
    from opensearchpy.exceptions import AuthorizationException
    from query_builder import QueryImage, SearchRequest, Searcher, space_for_index
    from query_builder.bodies import BuildError
    from query_builder.profile import load_profile, shipped_profiles

    search = client_for(url, sec, SEARCH)
    space = space_for_index(search, PRODUCTS, MODELS)
    photo = QueryImage.from_path(catalog.parent / "img" / "p0.jpg")
    requests = [SearchRequest(text="红色 连衣裙"), SearchRequest(images=(photo,)),
                SearchRequest(text="红色", images=(photo,))]

    # before an admin put the pipelines: hybrid is fused client-side, and the result says why
    early = Searcher(search, "hybrid_minmax", space, index=PRODUCTS).search(requests[0])
    assert early.fusion_path == "client" and early.hits
    assert any("cmsearch pipelines put" in n for n in early.notes), early.notes

    proc = cli("pipelines", "put", "--url", url, "--ca-certs", str(sec.ca_file), user=ADMIN,
               password_file=password_files[ADMIN])
    assert proc.returncode == 0 and "put " in proc.stdout, proc.stderr

    admin = client_for(url, sec, ADMIN)
    server_paths = 0
    for name in shipped_profiles():
        profile = load_profile(name)
        rec = RecordingClient(search)
        searcher = Searcher(rec, profile, space, index=PRODUCTS)
        as_admin = Searcher(admin, profile, space, index=PRODUCTS)
        for req in requests:
            try:
                result = searcher.search(req)
            except BuildError:   # the profile serves no such request (bm25 and a photo)
                continue
            # the same hits, fused the way an admin's search is: server-side wherever the cluster can
            theirs = as_admin.search(req)
            assert [h.id for h in result.hits] == [h.id for h in theirs.hits], name
            assert result.fusion_path == theirs.fusion_path, (name, result.notes)
            assert result.hits or name == "image", name   # (no heads here: text -> image finds nothing)
            assert not any("may not" in n or "pipelines put" in n for n in result.notes), result.notes
            server_paths += result.fusion_path == "server"
        # every call the searcher made is a read of the products index: no cluster API, no PUT
        for call in rec.calls:
            if call[0] == "transport":
                assert call[1] in ("GET", "POST") and call[2].startswith(f"/{PRODUCTS}/"), call
            else:
                assert call[0] in ("search", "msearch", "count"), call
                assert call[0] == "msearch" or call[1] == PRODUCTS, call
    assert server_paths >= 6
    # the command line as the search user, hybrid and server-side
    proc = cli("search", "红色 连衣裙", "--index", PRODUCTS, "--models", str(MODELS), "--json", "--url", url,
               "--ca-certs", str(sec.ca_file), user=SEARCH, password_file=password_files[SEARCH])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hits"] and out["fusion_path"] == "server"
    # read-only, and not the events index
    for attempt in (lambda: search.index(index=PRODUCTS, body={"title": "x"}),
                    lambda: search.delete(index=PRODUCTS, id="p0"),
                    lambda: search.indices.delete(index=PRODUCTS),
                    lambda: search.search(index=EVENTS_INDEX),
                    lambda: search.cluster.health()):
        with pytest.raises(AuthorizationException):
            attempt()


# ---------------------------------------------------------------- events writer
def test_events_user_only_writes_the_events_index(url, sec, password_files, tmp_path):
    from opensearchpy.exceptions import AuthorizationException

    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in (
        {"action_name": "search", "query_id": "q1", "client_id": "c1", "user_query": "连衣裙",
         "query_response_hit_ids": ["p0", "p1"], "timestamp": "2026-11-30T10:00:00Z"},
        {"action_name": "click", "query_id": "q1", "client_id": "c1", "timestamp": "2026-11-30T10:00:05Z",
         "event_attributes": {"object": {"object_id": "p0", "object_id_field": "id"},
                              "position": {"ordinal": 1}}})) + "\n")
    proc = cli("events", "load", str(events), "--index", EVENTS_INDEX, "--url", url, "--ca-certs", str(sec.ca_file),
               user=EVENTS, password_file=password_files[EVENTS])
    assert proc.returncode == 0, proc.stderr
    assert "added 2 events" in proc.stdout
    assert client_for(url, sec, ADMIN).count(index=EVENTS_INDEX)["count"] == 2
    writer = client_for(url, sec, EVENTS)
    for attempt in (lambda: writer.search(index=EVENTS_INDEX), lambda: writer.get(index=EVENTS_INDEX, id="x"),
                    lambda: writer.index(index=PRODUCTS, body={"title": "x"}), lambda: writer.search(index=PRODUCTS),
                    lambda: writer.indices.delete(index=EVENTS_INDEX)):
        with pytest.raises(AuthorizationException):
            attempt()
    # the same user through the URL's user-info: works, and the password is shown nowhere
    pw = sec.credentials().password(EVENTS)
    user_url = url.replace("https://", f"https://{EVENTS}:{pw}@")
    proc = cli("events", "load", str(events), "--index", EVENTS_INDEX, "--url", user_url, "--ca-certs", str(sec.ca_file))
    assert proc.returncode == 0, proc.stderr
    proc = cli("events", "load", str(events), "--index", PRODUCTS, "--url", user_url, "--ca-certs", str(sec.ca_file))
    msg = one_line_error(proc)
    assert "may not do this" in msg and "403" in msg, msg


# ---------------------------------------------------------------- the local secured node by default
def test_local_secured_node_is_found_and_verified_by_default(secure_engine, url, password_files):
    local = {"CMSEARCH_ENGINE_DIR": str(secure_engine.state_dir)}
    proc = cli("index", "stats", PRODUCTS, user=ADMIN, password_file=password_files[ADMIN], env=local)
    assert proc.returncode == 0, proc.stderr            # https, verified against the node's own CA
    assert json.loads(proc.stdout)["products"] == 8
    pid = secure_engine.pid()
    proc = cli("engine", "start", "--secure", "--timeout", "60", env=local)
    assert proc.returncode == 0 and proc.stdout.strip() == url, proc.stderr   # reused, not a second JVM
    assert "ca.pem" in proc.stderr and secure_engine.pid() == pid
    msg = one_line_error(cli("engine", "start", env=local))
    assert "runs with security" in msg and "--secure" in msg


# ---------------------------------------------------------------- no secret anywhere
def test_no_password_or_key_in_any_output_log_checkpoint_or_rejects(secure_engine, sec):
    texts = {f"output {i}": t for i, t in enumerate(OUTPUTS)}
    files = [f for f in WRITTEN if f.exists()]
    files += [f for f in secure_engine.state_dir.rglob("*") if f.is_file() and "logs" in f.parts]
    assert any("logs" in f.parts for f in files) and len(OUTPUTS) > 20
    for f in files:
        texts[str(f)] = f.read_text(errors="replace")
    assert not places_with_secrets(texts, secret_strings(sec))
