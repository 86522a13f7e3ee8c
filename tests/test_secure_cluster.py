"""Security on a cluster (issue 14, sections 1 and 2 together): three secured nodes, a replicated
multi-shard products index, the least-privilege users, and a node killed with -9.

One cluster for the module, under its own state dir: ``LocalEngine(secure=True, nodes=3)``, every
node TLS on HTTP and transport with the certificates of that state dir's throwaway CA, the
security index created by node-0 alone and replicated to the others.  Commands run as the user
each test names, through the command line; every output, log, checkpoint and rejects file is
searched for the passwords and the private keys at the end.
"""
from __future__ import annotations

import json
import os
import ssl
import stat
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from query_load import QueryLoad
from secure_helpers import (ADMIN, INGEST, MODELS, SEARCH, client_for, make_cli, running_secure_engine,
                            one_line_error, places_with_secrets, secret_strings, write_catalog)
from secure_helpers import password_files as write_password_files

pytestmark = [pytest.mark.engine, pytest.mark.models]

SUFFIX = uuid.uuid4().hex[:8]
PRODUCTS = f"products-seccl-{SUFFIX}"        # inside the roles' products-* pattern
OTHER = f"other-seccl-{SUFFIX}"              # outside every role's patterns
N_PRODUCTS = 24
SHARDS = 3
HYBRID = ("hybrid_minmax", "hybrid_minmax_noboost", "hybrid_rrf")
LOAD_THREADS, LOAD_SECONDS = 2, 20

OUTPUTS: list[str] = []
WRITTEN: list[Path] = []
cli = make_cli(OUTPUTS)


@pytest.fixture(scope="module")
def cluster():
    # three JVMs and TLS set-up on a loaded 2-core machine: a long start
    yield from running_secure_engine("CMSEARCH_TEST_SECURE_CLUSTER_DIR", "test-secure-cluster", timeout=600,
                                     nodes=3, heap="512m")


@pytest.fixture(scope="module")
def sec(cluster):
    from engine.security import SecureNode

    return SecureNode(cluster.state_dir)


@pytest.fixture(scope="module")
def local_env(cluster):
    """The command line's environment for the local secured cluster (found and verified by default)."""
    return {"CMSEARCH_ENGINE_DIR": str(cluster.state_dir), "OPENSEARCH_URL": ""}


@pytest.fixture(scope="module")
def password_files(sec, tmp_path_factory):
    return write_password_files(sec, tmp_path_factory.mktemp("pw"))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"), N_PRODUCTS)


def _urls(cluster) -> dict[str, str]:
    return {st.name: st.url for st in cluster.node_states()}


def _pids(cluster) -> dict[str, int | None]:
    return {st.name: st.pid for st in cluster.node_states()}


def _kill(pid: int) -> None:
    """kill -9 and wait until the process is gone (reaped if it is our child)."""
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.1)


# ---------------------------------------------------------------- pure: who initialises the security index
def test_only_the_initialising_node_gets_the_plugin_configuration(tmp_path):
    from engine.security import SecureNode

    sec = SecureNode(tmp_path / "state")
    first = sec.configure(tmp_path / "node-0", init_index=True)
    other = sec.configure(tmp_path / "node-1", init_index=False)
    assert "-Eplugins.security.allow_default_init_securityindex=true" in first
    assert "-Eplugins.security.allow_default_init_securityindex=false" in other
    assert [a for a in first if "allow_default_init" not in a] == [a for a in other if "allow_default_init" not in a]
    assert (tmp_path / "node-0" / "opensearch-security" / "internal_users.yml").is_file()
    assert not (tmp_path / "node-1" / "opensearch-security").exists()      # no copy of the users' hashes
    for node in ("node-0", "node-1"):       # both get the certificates (TLS), keys private
        assert stat.S_IMODE((tmp_path / node / "node-key.pem").stat().st_mode) == 0o600
        assert (tmp_path / node / "node.pem").read_bytes() == (sec.dir / "node.pem").read_bytes()


# ---------------------------------------------------------------- TLS on every node, security set up once
def test_cluster_is_green_over_verified_https_on_every_node(cluster, sec, password_files, local_env, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from engine.security import _make_ca

    urls = _urls(cluster)
    assert sorted(urls) == ["node-0", "node-1", "node-2"] and all(u and u.startswith("https://127.0.0.1:")
                                                                  for u in urls.values()), urls
    _, other_ca = _make_ca()
    wrong = ssl.create_default_context(cadata=other_ca.public_bytes(serialization.Encoding.PEM).decode())
    for name, url in urls.items():
        health = client_for(url, sec, ADMIN).cluster.health()
        assert (health["status"], health["number_of_nodes"]) == ("green", 3), (name, health)
        with pytest.raises(urllib.error.HTTPError) as err:          # TLS verified; no credentials: 401
            urllib.request.urlopen(url, context=sec.ssl_context(), timeout=10)
        assert err.value.code == 401, name
        for ctx in (wrong, None):                                   # another CA, the system's CAs
            with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
                urllib.request.urlopen(url, context=ctx, timeout=10)
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(url.replace("https:", "http:"), timeout=10)
    # transport is TLS too, with a certificate of this state dir's CA
    ca = sec.ca_file.read_text()
    for name, port in json.loads((cluster.cluster_dir / "cluster.json").read_text())["transport_ports"].items():
        pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
        assert _issued_by(pem, ca), f"{name}'s transport port {port} serves no certificate of the CA"
    # the users and roles were written into the security index once, by node-0, and read by the others
    inits = [nd.name for nd in cluster.cluster_nodes()
             if "Will attempt to create index .opendistro_security" in _logs(nd.path)]
    assert inits == ["node-0"], inits
    assert not (cluster.cluster_dir / "node-1" / "home" / "config" / "opensearch-security").exists()
    for nd in cluster.cluster_nodes():
        keys = list((nd.path / "home" / "config").glob("*key*.pem"))
        assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys), nd.name
    # the command line finds the local cluster and talks to it as admin, verified by default
    proc = cli("engine", "status", "--json", user=ADMIN, password_file=password_files[ADMIN], env=local_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["health"], out["number_of_nodes"]) == ("green", 3), out
    assert [(n["name"], n["up"], n["url"]) for n in out["local_nodes"]] == [(k, True, urls[k]) for k in sorted(urls)]
    assert sum(n["cluster_manager"] for n in out["cluster_nodes"]) == 1
    msg = one_line_error(cli("engine", "status", "--url", urls["node-1"], "--ca-certs", str(sec.ca_file)))
    assert "asks for credentials and none were given" in msg, msg


def _issued_by(cert_pem: str, ca_pem: str) -> bool:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    cert, ca = x509.load_pem_x509_certificate(cert_pem.encode()), x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _logs(node_path: Path) -> str:
    return "".join(f.read_text(errors="replace") for f in sorted((node_path / "logs").glob("*")) if f.is_file())


# ---------------------------------------------------------------- ingest user, replicated multi-shard index
def test_ingest_user_creates_a_replicated_index_loads_it_and_nothing_else(cluster, sec, password_files, catalog,
                                                                          tmp_path):
    from opensearchpy.exceptions import AuthorizationException

    url = _urls(cluster)["node-0"]
    good = ("--url", url, "--ca-certs", str(sec.ca_file))
    as_ingest = {"user": INGEST, "password_file": password_files[INGEST]}
    rejects, checkpoint = tmp_path / "rejects.jsonl", tmp_path / "checkpoint.json"
    WRITTEN.extend([rejects, checkpoint])
    proc = cli("index", "create", PRODUCTS, "--shards", str(SHARDS), "--models", str(MODELS), *good, **as_ingest)
    assert proc.returncode == 0, proc.stderr
    assert f"{SHARDS} shards, 1 replica on 3 data nodes" in proc.stdout + proc.stderr   # replicas: the 3-node default
    proc = cli("ingest", str(catalog), "--index", PRODUCTS, "--models", str(MODELS), "--rejects", str(rejects),
               "--checkpoint", str(checkpoint), "--no-progress", "--json", *good, **as_ingest)
    assert proc.returncode == 1, proc.stderr          # the one record without a title is rejected, the rest loaded
    counts = json.loads(proc.stdout)["counts"]
    assert (counts["indexed"], counts["rejected"]) == (N_PRODUCTS, 1), counts
    assert json.loads(rejects.read_text().splitlines()[0])["line"] == N_PRODUCTS + 1
    admin = client_for(url, sec, ADMIN)
    s = admin.indices.get_settings(index=PRODUCTS)[PRODUCTS]["settings"]["index"]
    assert (s["number_of_shards"], s["number_of_replicas"]) == (str(SHARDS), "1")
    assert admin.cluster.health(index=PRODUCTS, params={"wait_for_status": "green", "timeout": "60s"},
                                request_timeout=120)["status"] == "green"
    admin.indices.refresh(index=PRODUCTS)
    assert admin.count(index=PRODUCTS)["count"] == N_PRODUCTS
    placed = admin.cat.shards(index=PRODUCTS, format="json", h="node,prirep")
    assert len({p["node"] for p in placed}) == 3 and len(placed) == 2 * SHARDS, placed

    admin.indices.create(index=OTHER, body={"settings": {"number_of_replicas": 1},
                                            "mappings": {"properties": {"t": {"type": "keyword"}}}})
    admin.index(index=OTHER, id="1", body={"t": "x"}, refresh=True)
    ingest = client_for(url, sec, INGEST)
    for attempt in (lambda: ingest.search(index=OTHER), lambda: ingest.index(index=OTHER, body={"t": "y"}),
                    lambda: ingest.indices.create(index=f"{OTHER}-new")):
        with pytest.raises(AuthorizationException):
            attempt()
    WRITTEN.append(tmp_path / "other.ckpt")
    proc = cli("ingest", str(catalog), "--index", OTHER, "--models", str(MODELS), "--rejects", str(rejects),
               "--checkpoint", str(tmp_path / "other.ckpt"), *good, **as_ingest)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert admin.count(index=OTHER)["count"] == 1


# ---------------------------------------------------------------- search user, hybrid on the cluster
def _requests(catalog: Path):
    from query_builder import QueryImage, SearchRequest

    photo = QueryImage.from_path(catalog.parent / "img" / "p0.jpg")
    return [SearchRequest(text="红色 连衣裙"), SearchRequest(images=(photo,)), SearchRequest(text="红色", images=(photo,))]


def test_search_user_gets_the_admins_top10_from_every_hybrid_profile(cluster, sec, password_files, catalog):
    from opensearchpy.exceptions import AuthorizationException
    from query_builder import Searcher, space_for_index

    url = _urls(cluster)["node-0"]
    proc = cli("pipelines", "put", "--url", url, "--ca-certs", str(sec.ca_file), user=ADMIN,
               password_file=password_files[ADMIN])
    assert proc.returncode == 0 and "put " in proc.stdout, proc.stderr
    search, admin = client_for(url, sec, SEARCH), client_for(url, sec, ADMIN)
    space = space_for_index(search, PRODUCTS, MODELS)
    # normalization runs server-side on 3 shards; rank-based RRF goes client-side there by design;
    # a photo alone is one retriever, nothing to fuse
    fused = {"hybrid_minmax": "server", "hybrid_minmax_noboost": "server", "hybrid_rrf": "client"}
    for name in HYBRID:
        mine, theirs = Searcher(search, name, space, index=PRODUCTS), Searcher(admin, name, space, index=PRODUCTS)
        for req in _requests(catalog):
            got, want = mine.search(req), theirs.search(req)
            assert got.hits, (name, req.text)
            assert [h.id for h in got.hits[:10]] == [h.id for h in want.hits[:10]], (name, req.text)
            assert got.fusion_path == want.fusion_path == (fused[name] if req.text else "single"), \
                (name, req.text, got.fusion_path, want.fusion_path, got.notes)
            assert not any("may not" in n or "pipelines put" in n for n in got.notes), got.notes
    proc = cli("search", "红色 连衣裙", "--index", PRODUCTS, "--models", str(MODELS), "--json", "--url", url,
               "--ca-certs", str(sec.ca_file), user=SEARCH, password_file=password_files[SEARCH])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hits"] and out["fusion_path"] == "server"
    for attempt in (lambda: search.index(index=PRODUCTS, body={"title": "x"}), lambda: search.search(index=OTHER),
                    lambda: search.cluster.health()):
        with pytest.raises(AuthorizationException):
            attempt()


# ---------------------------------------------------------------- kill -9 of a node under a query load
def test_search_user_queries_keep_being_answered_when_a_node_is_killed(cluster, sec, catalog, local_env,
                                                                       record_property):
    from query_builder import SearchRequest, Searcher, space_for_index

    urls = _urls(cluster)
    entry = "node-0"                  # the node the searchers talk to
    admin = client_for(urls[entry], sec, ADMIN)
    manager = next(n["name"] for n in admin.cat.nodes(format="json", h="name,cluster_manager")
                   if n["cluster_manager"] == "*")
    primaries = {s["node"] for s in admin.cat.shards(index=PRODUCTS, format="json", h="node,prirep")
                 if s["prirep"] == "p"}
    # a node the client does not talk to and not the elected manager, holding a primary when one does
    others = sorted(n for n in urls if n not in (entry, manager))
    victim = next((n for n in others if n in primaries), others[0])
    before = _pids(cluster)
    victim_pid = before[victim]

    search = client_for(urls[entry], sec, SEARCH, timeout=20)
    space = space_for_index(search, PRODUCTS, MODELS)
    searchers = [Searcher(search, p, space, index=PRODUCTS) for p in ("hybrid_minmax", "hybrid_rrf", "bm25")]
    requests = [SearchRequest(text=t) for t in ("红色 连衣裙", "蓝色 运动鞋", "黑色 双肩包", "白色 衬衫")]
    for s in searchers:               # capabilities probed and vocabulary read before the clock runs
        s.search(requests[0])

    load = QueryLoad(searchers, requests, LOAD_THREADS)
    load.start()
    time.sleep(4)
    t_kill = time.monotonic()
    _kill(victim_pid)
    time.sleep(8)                     # the load goes on with a node down ...
    t_restart = time.monotonic()      # ... and while `engine start` brings it back and its shards recover
    restart = cli("engine", "start", "--secure", "--nodes", "3", "--timeout", "400", env=local_env, timeout=450)
    time.sleep(max(0.0, load.t0 + LOAD_SECONDS - time.monotonic()))
    load.stop()
    assert restart.returncode == 0, restart.stderr
    assert "ca.pem" in restart.stderr and f"already running: {', '.join(sorted(set(before) - {victim}))}" \
        in restart.stderr, restart.stderr

    summary = {"victim": victim, "manager": manager, **load.summary(t_kill, t_restart)}
    record_property("secure_query_load_kill", json.dumps(summary))
    print(f"\nsecured cluster, query load as {SEARCH}, {LOAD_THREADS} threads, {load.t_end - load.t0:.0f} s, "
          f"{victim} killed at {t_kill - load.t0:.0f} s and started again at {t_restart - load.t0:.0f} s: {summary}")
    assert summary["answered_while_down"] > 0 and not summary["errors"], summary
    assert summary["longest_gap_s"] < 5, summary

    now = _pids(cluster)
    assert now[victim] not in (None, victim_pid), now
    assert {k: v for k, v in now.items() if k != victim} == {k: v for k, v in before.items() if k != victim}
    back = _urls(cluster)[victim]
    assert back and back.startswith("https://")
    health = client_for(back, sec, ADMIN).cluster.health(
        params={"wait_for_status": "green", "wait_for_nodes": "3", "timeout": "240s"}, request_timeout=300)
    assert (health["status"], health["number_of_nodes"]) == ("green", 3), health


# ---------------------------------------------------------------- stop
def test_engine_stop_stops_every_secured_node(cluster, local_env):
    from engine.node_dir import running_launchers

    pids = _pids(cluster)
    assert all(pids.values()), pids
    proc = cli("engine", "stop", env=local_env)
    assert proc.returncode == 0 and proc.stdout.strip() == "stopped node-0, node-1, node-2", proc.stdout + proc.stderr
    running = {p for ps in (running_launchers() or {}).values() for p in ps}
    assert not running & set(pids.values()), pids
    assert all(st.pid is None and st.url is None for st in cluster.node_states())

# ---------------------------------------------------------------- no secret anywhere
def test_no_password_or_key_in_any_log_checkpoint_rejects_or_output(cluster, sec):
    texts = {f"output {i}": t for i, t in enumerate(OUTPUTS)}
    files = [f for f in WRITTEN if f.exists()]
    logs = [f for f in cluster.state_dir.rglob("*") if f.is_file() and "logs" in f.parts]
    assert {f.relative_to(cluster.cluster_dir).parts[0] for f in logs} == {"node-0", "node-1", "node-2"}
    assert any(f.name == "rejects.jsonl" for f in files) and len(OUTPUTS) >= 16   # (a finished load drops its checkpoint)
    for f in files + logs:
        texts[str(f)] = f.read_text(errors="replace")
    found = secret_strings(sec)
    assert len(found) == 4 + 2 * 2                    # four passwords, lines of the CA's and the node's keys
    assert not places_with_secrets(texts, found)
