"""Several nodes: a 3-shard index answers like a 1-shard one, and a node killed with -9 loses
nothing and stops nothing.

Runs on the session's 3-node cluster (``local_cluster``, started once, only for these tests:
``-m cluster`` selects them).  The catalog is real product text (IKEA, Chinese product titles)
without photos, encoded by the real text model through `cmsearch ingest`; it is loaded once into
a 3-shard index with one replica and copied (``_reindex``: the same documents, the same vectors)
into a 1-shard index, the reference.

How the sharded index is made to answer like the reference:

- BM25 scores depend on term statistics, which each shard keeps for its own documents only, so
  with the default ``query_then_fetch`` a 3-shard index ranks by three different IDFs.
  ``dfs_query_then_fetch`` first gathers the statistics of all shards, and the scores are then
  those of one shard: the lexical top-10 must be identical (ties aside).
- k-NN (Lucene HNSW): every shard returns its own top ``k`` (the profile's k, 100) and the
  coordinating node keeps the best ``size``; ``k`` is per shard, not divided among shards, so
  the global top-10 is in the union as long as each shard finds its own top-10, and a shard of a
  third of the documents finds them at least as reliably as the one big graph.
- hybrid: ``pagination_depth`` (the profile's ``candidates``, 100) is also per shard and per
  sub-query, and the normalization processor normalizes over all shards' results at once.
  neural-search 2.19 does not normalize under ``dfs_query_then_fetch`` on several shards (it
  runs no QUERY phase, so the processor is skipped, neural-search#1490), so hybrid runs with
  the default search type: its lexical part keeps per-shard IDF, which is why hybrid is held to
  recall@10 >= 0.95 and not to identity.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.layout import choose_layout
from query_load import QueryLoad

REPO = Path(__file__).resolve().parents[1]
N_IKEA, N_ZH = 400, 260
N_KILL_INGEST = 320   # products of the load a node is killed in (the first ones of the catalog)


# ------------------------------------------------------------------------- pure: index layout
def test_layout_defaults_follow_the_cluster():
    assert (choose_layout(1).shards, choose_layout(1).replicas) == (1, 0)
    assert (choose_layout(3).shards, choose_layout(3).replicas) == (1, 1)
    assert (choose_layout(2).shards, choose_layout(2).replicas) == (1, 1)
    assert choose_layout(1).warning is None and choose_layout(3).warning is None
    given = choose_layout(3, shards=3, replicas=2)
    assert (given.shards, given.replicas, given.warning) == (3, 2, None)
    assert "yellow" in choose_layout(1, replicas=1).warning
    assert choose_layout(3).describe() == "1 shard, 1 replica on 3 data nodes"
    with pytest.raises(ValueError, match="shards"):
        choose_layout(1, shards=0)
    with pytest.raises(ValueError, match="replicas"):
        choose_layout(1, replicas=-1)


# ------------------------------------------------------------------------- engine state, no JVM
def _recorded_cluster(tmp_path: Path, n: int):
    from engine import LocalEngine

    eng = LocalEngine(state_dir=tmp_path / "engine")
    eng.cluster_dir.mkdir(parents=True)
    (eng.cluster_dir / "cluster.json").write_text(json.dumps(
        {"nodes": n, "cluster_name": "cmsearch-test", "transport_ports": {f"node-{i}": 9399 - i for i in range(n)}}))
    for nd in eng.cluster_nodes():
        nd.path.mkdir()
        nd.ready_file.write_text("http://127.0.0.1:1\n")    # as a node killed with -9 leaves it
        nd.pid_file.write_text("999999999")
    return eng


def test_a_cluster_of_another_size_than_its_data_is_refused(tmp_path):
    from engine import EngineError

    eng = _recorded_cluster(tmp_path, 3)
    with pytest.raises(EngineError, match=r"is of a 3-node cluster: start it with `--nodes 3`, or delete"):
        eng.start(nodes=2)
    with pytest.raises(EngineError, match="between 1 and 9"):
        eng.start(nodes=0)


def test_nodes_killed_with_9_read_as_down_not_running(tmp_path):
    from cmsearch.cli import cli

    eng = _recorded_cluster(tmp_path, 3)
    assert [(st.name, st.pid, st.url) for st in eng.node_states()] == [(f"node-{i}", None, None) for i in range(3)]
    assert eng.pid() is None and eng.url() is None and eng.urls() == []
    res = CliRunner().invoke(cli, ["engine", "stop"], env={"CMSEARCH_ENGINE_DIR": str(eng.state_dir)})
    assert res.exit_code == 0 and res.output.strip() == "no local node was running", res.output
    assert not any(nd.ready_file.exists() or nd.pid_file.exists() for nd in eng.cluster_nodes())


# ------------------------------------------------------------------------- helpers
def _client(url: str, timeout: float = 60.0):
    from engine.client import ConnectionSettings

    return ConnectionSettings.resolve(url, timeout=timeout).client()


def _cli(*args: str, env: dict | None = None):
    from cmsearch.cli import cli

    res = CliRunner().invoke(cli, list(args), env=env)
    assert res.exit_code == 0, res.output
    return res


def _hits(resp) -> list[tuple[str, float]]:
    from query_builder.results import hit_id

    return [(hit_id(h), float(h["_score"] or 0.0)) for h in resp["hits"]["hits"]]


def _pids(eng) -> dict[str, int | None]:
    return {st.name: st.pid for st in eng.node_states()}


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)     # our child (exit_with_parent): reap it
            if done:
                return
        except ChildProcessError:                     # reaped elsewhere, or not our child
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.1)


def _health(client, index: str | None = None, **params: str) -> dict:
    """Cluster health; ``params`` are the API's (wait_for_status, timeout ...), not the client's."""
    return client.cluster.health(index=index, params=params, request_timeout=300)


def _restart_after_kill(eng, killed: dict[str, int], stranger_pid: int) -> None:
    """Start the cluster again the way a user would after a crash: each killed node left its pid
    file, READY and data lock behind (the first one's pid file here names a live stranger, as
    after pid reuse), and `start` must bring back just those nodes, with their data."""
    for k, name in enumerate(killed):
        node = next(nd for nd in eng.cluster_nodes() if nd.name == name)
        assert node.ready_file.exists(), "kill -9 leaves READY behind"
        assert list((node.path / "data").rglob("node.lock")), "kill -9 leaves the data dir's node.lock behind"
        if k == 0:
            node.pid_file.write_text(str(stranger_pid))
    before = _pids(eng)
    assert all(before[name] is None for name in killed)
    eng.start(nodes=3, exit_with_parent=True, timeout=420)
    now = _pids(eng)
    for name, old in killed.items():
        assert now[name] not in (None, old, stranger_pid)
    assert {k: v for k, v in now.items() if k not in killed} == {k: v for k, v in before.items() if k not in killed}


# ------------------------------------------------------------------------- catalog and indices
def _catalog_rows(data_dir: Path) -> tuple[list[dict], list[str]]:
    """Text-only products (IKEA bilingual titles + Chinese marketplace titles) and judged-style
    queries: IKEA "type, color", Chinese IKEA type words, Chinese product instance names."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from make_catalogs import ikea_queries, ikea_records
    finally:
        sys.path.remove(str(REPO / "bench"))
    rng = np.random.default_rng(14)
    ikea = ikea_records(data_dir)
    ikea = [ikea[i] for i in sorted(rng.choice(len(ikea), N_IKEA, replace=False))]
    rows = []
    for r in ikea:
        rows.append({k: v for k, v in r.items() if k not in ("images",)} | {"images": []})
        rows[-1]["attributes"] = {k: v for k, v in r["attributes"].items() if k != "rooms"}
    zh, seen = [], set()
    with open(data_dir / "product1m-zh" / "dev.jsonl", encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            if p["id"] in seen or not p.get("title"):
                continue
            seen.add(p["id"])
            zh.append(p)
    zh = [zh[i] for i in sorted(rng.choice(len(zh), N_ZH, replace=False))]
    for p in zh:
        rows.append({"id": p["id"], "title": p["title"], **({"brand": p["brands"][0]} if p.get("brands") else {})})
    pick = [ikea[i]["id"] for i in rng.choice(len(ikea), 24, replace=False)]
    queries = [q["query"] for q in ikea_queries(ikea, pick)["ikea_type_color"]]
    queries += sorted({r["attributes"]["type_zh"] for r in ikea[:40]})[:8]
    queries += sorted({i for p in zh[:60] for i in p.get("instances", [])})[:10]
    return rows, queries


@pytest.fixture(scope="module")
def catalog(shared_data, tmp_path_factory):
    rows, queries = _catalog_rows(shared_data)
    path = tmp_path_factory.mktemp("cluster-catalog") / "catalog.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, [r["id"] for r in rows], queries


def _ingest_cmd(catalog: Path, index: str, url: str, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cmsearch.cli", "ingest", str(catalog), "--index", index, "--url", url,
            "--heads", "none", "--no-progress", "--json", "--checkpoint", str(work / f"{index}.ckpt.json"),
            "--rejects", str(work / f"{index}.rejects.jsonl"), *extra]


@pytest.fixture(scope="module")
def indices(catalog, local_cluster, tmp_path_factory):
    """(3-shard index with a replica, 1-shard reference) holding the same catalog."""
    path, ids, _ = catalog
    url = local_cluster.url()
    client = _client(url, timeout=300)
    three, one = "cluster-s3", "cluster-s1"
    # defaults chosen for the cluster: one replica on three nodes
    out = _cli("index", "create", three, "--heads", "none", "--shards", "3", "--url", url, "--recreate").output
    assert "3 shards, 1 replica on 3 data nodes" in out
    _cli("index", "create", one, "--heads", "none", "--shards", "1", "--replicas", "0", "--url", url, "--recreate")
    work = tmp_path_factory.mktemp("cluster-ingest")
    res = subprocess.run(_ingest_cmd(path, three, url, work), capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["counts"]["indexed"] == len(ids)
    client.reindex(body={"source": {"index": three}, "dest": {"index": one}}, refresh=True, wait_for_completion=True,
                   request_timeout=300)
    for name in (three, one):  # no deleted documents in the statistics, one graph per shard
        client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=300)
        client.indices.refresh(index=name)
        assert client.count(index=name)["count"] == len(ids)
    _health(client, index=three, wait_for_status="green", timeout="120s")
    yield three, one
    client = _client(local_cluster.url())        # the nodes' HTTP ports change when the tests restart them
    for name in (three, one):
        client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def query_requests(catalog):
    """Each query with its real text vector, computed once (the searches then need no model)."""
    from models.space import Space
    from query_builder.request import QueryVectors, SearchRequest

    space = Space.load(None, None, strict=True)
    out = []
    for q in catalog[2]:
        emb = space.embed_query(q)
        out.append(SearchRequest(text=q, size=10, vectors=QueryVectors(text=tuple(float(x) for x in emb.text))))
    return out


# ------------------------------------------------------------------------- engine commands on the cluster


@pytest.mark.cluster
def test_status_shows_every_node_health_and_url(local_cluster):
    env = {"CMSEARCH_ENGINE_DIR": str(local_cluster.state_dir), "OPENSEARCH_URL": ""}
    out = json.loads(_cli("engine", "status", "--json", env=env).output)
    assert out["url"] == local_cluster.url() and out["number_of_nodes"] == 3 and out["health"] == "green"
    assert [n["name"] for n in out["local_nodes"]] == ["node-0", "node-1", "node-2"]
    assert all(n["up"] and n["url"].startswith("http://127.0.0.1:") for n in out["local_nodes"])
    assert sorted(n["name"] for n in out["cluster_nodes"]) == ["node-0", "node-1", "node-2"]
    assert sum(n["cluster_manager"] for n in out["cluster_nodes"]) == 1
    text = _cli("engine", "status", env=env).output
    assert text.count("local node") == 3 and "number_of_nodes  3" in text


@pytest.mark.cluster
def test_start_of_another_size_says_what_runs(local_cluster):
    from engine import EngineError, LocalEngine

    other = LocalEngine(state_dir=local_cluster.state_dir)
    before = _pids(local_cluster)
    with pytest.raises(EngineError, match="a 3-node cluster runs under .*--nodes 3"):
        other.start()                       # one node, where a cluster runs
    with pytest.raises(EngineError, match="a 3-node cluster runs under .*--nodes 3"):
        other.start(nodes=2)
    assert other.start(nodes=3, timeout=120) == local_cluster.url()     # the running cluster, reused
    assert _pids(local_cluster) == before


@pytest.mark.cluster
def test_index_create_defaults_to_one_replica_on_three_nodes(local_cluster):
    url = local_cluster.url()
    client = _client(url)
    try:
        out = _cli("index", "create", "cluster-defaults", "--heads", "none", "--url", url).output
        assert "1 shard, 1 replica on 3 data nodes" in out
        s = client.indices.get_settings(index="cluster-defaults")["cluster-defaults"]["settings"]["index"]
        assert (s["number_of_shards"], s["number_of_replicas"]) == ("1", "1")
    finally:
        client.indices.delete(index="cluster-defaults", ignore_unavailable=True)


# ------------------------------------------------------------------------- 3 shards answer like 1
def _close(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-4 * max(1.0, abs(x))


def _same_top10(ref: list[tuple[str, float]], got: list[tuple[str, float]]) -> bool:
    """The same top-10 ids in the same order, up to the order of equal scores: the reference's
    tie groups decide (a constant-score boost ties dozens of products).  A group wholly in the
    top 10 holds the same ids in ``got``; a group the 10th place cuts holds, in ``got``, members
    of that group tied among themselves.  Both lists are fetched deeper than 10."""
    if len(ref[:10]) != len(got[:10]):
        return False
    i = 0
    while i < len(ref[:10]):
        j = i
        while j + 1 < len(ref) and _close(ref[j + 1][1], ref[i][1]):
            j += 1
        group, end = {d for d, _ in ref[i:j + 1]}, min(j, 9)
        mine = got[i:end + 1]
        if not all(_close(s, mine[0][1]) for _, s in mine):
            return False
        if j <= 9 and {d for d, _ in mine} != group:
            return False
        if 9 < j < len(ref) - 1 and not {d for d, _ in mine} <= group:
            return False        # (a group reaching the fetch depth cannot be checked for membership)
        i = j + 1
    return True


def _recall(ref: list[tuple[str, float]], got: list[tuple[str, float]], tie_score: bool) -> float:
    """recall@10 of ``got`` against ``ref``; with ``tie_score`` (scores comparable: k-NN) a hit
    scoring as well as ref's 10th counts too, so equal vectors do not read as misses."""
    ref10 = ref[:10]
    if not ref10:
        return 1.0 if not got else 0.0
    ids = {i for i, _ in ref10}
    cut = ref10[-1][1] if len(ref10) == 10 else float("inf")
    found = sum(1 for i, s in got[:10] if i in ids or (tie_score and s >= cut - 1e-6))
    return min(1.0, found / len(ref10))


def _profile(name: str, **changes) -> dict:
    prof = json.loads((REPO / "query_builder" / "profiles" / f"{name}.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        prof[key] = {**prof.get(key, {}), **value}
    prof["name"] = f"{name}-" + "-".join(f"{v}" for c in changes.values() for v in c.values())
    return prof


@pytest.mark.cluster
@pytest.mark.models
@pytest.mark.data
@pytest.mark.parametrize("lexical_type", ["cross_fields", "most_fields"])
def test_bm25_top10_identical_on_3_shards_with_dfs(indices, query_requests, local_cluster, lexical_type,
                                                   record_property):
    """With ``dfs_query_then_fetch`` the 3-shard index ranks like the 1-shard one.  Exactly so for a
    multi_match that is not blended (most_fields: every query, equal scores).  The shipped bm25
    profile's cross_fields blends each term's document frequency over the fields inside each
    shard, before DFS adds the shards up, so its scores move slightly (sum of per-shard maxima is
    not the maximum of the sums) and a near tie can swap: held to 90 % identical and reported."""
    from query_builder import Searcher

    three, one = indices
    client = _client(local_cluster.url())
    prof = _profile("bm25", lexical={"type": lexical_type}) if lexical_type != "cross_fields" else "bm25"
    searcher = Searcher(client, prof, index=one)
    same_dfs = same_plain = 0
    differ = []
    for req in query_requests:
        body = searcher.prepare(req).body()
        body["size"] = 30
        ref = _hits(client.search(index=one, body=body))
        dfs = _hits(client.search(index=three, body=body, params={"search_type": "dfs_query_then_fetch"}))
        plain = _hits(client.search(index=three, body=body))
        assert ref, f"no BM25 hits for {req.text!r}: the query set is meant to match"
        if _same_top10(ref, dfs):
            same_dfs += 1
        else:
            differ.append((req.text, ref[:10], dfs[:10]))
        same_plain += _same_top10(ref, plain)
        if lexical_type != "cross_fields":
            assert all(_close(x, y) for (_, x), (_, y) in zip(ref, dfs)), (req.text, ref[:10], dfs[:10])
    n = len(query_requests)
    record_property(f"bm25_{lexical_type}_identical", f"dfs {same_dfs}/{n}, query_then_fetch {same_plain}/{n}")
    print(f"\nBM25 ({lexical_type}) top-10 identical to 1 shard: dfs_query_then_fetch {same_dfs}/{n}, "
          f"query_then_fetch {same_plain}/{n}; differing with dfs: {[d[0] for d in differ]}")
    if lexical_type == "cross_fields":
        assert same_dfs >= 0.9 * n, differ
    else:
        assert not differ, differ[:3]


def _recall_of(client, three: str, one: str, profile, requests, tie_score: bool) -> tuple[float, float, str]:
    from query_builder import Searcher

    ref_s, got_s = Searcher(client, profile, index=one), Searcher(client, profile, index=three)
    recalls, path = [], ""
    for req in requests:
        ref, got = ref_s.search(req), got_s.search(req)
        path = got.fusion_path
        recalls.append(_recall([(h.id, h.score) for h in ref.hits], [(h.id, h.score) for h in got.hits], tie_score))
    return float(np.mean(recalls)), min(recalls), path


@pytest.mark.cluster
@pytest.mark.models
@pytest.mark.data
@pytest.mark.parametrize("profile,fusion_mode", [("dense_text", None), ("hybrid_minmax", "server"),
                                                 ("hybrid_rrf", "client")])
def test_knn_and_hybrid_recall_on_3_shards(indices, query_requests, local_cluster, profile, fusion_mode,
                                           record_property):
    three, one = indices
    prof = _profile(profile, fusion={"mode": fusion_mode}) if fusion_mode else profile
    mean, low, path = _recall_of(_client(local_cluster.url()), three, one, prof, query_requests,
                                 tie_score=profile == "dense_text")
    record_property(f"recall10_{profile}_{path}", round(mean, 4))
    print(f"\n{profile} ({path}): recall@10 of 3 shards against 1 shard = {mean:.4f} (lowest {low:.2f}, "
          f"{len(query_requests)} queries)")
    assert path == ("single" if fusion_mode is None else fusion_mode)
    assert mean >= 0.95


@pytest.mark.cluster
@pytest.mark.models
@pytest.mark.data
def test_shipped_rrf_profile_recall_on_3_shards(indices, query_requests, local_cluster, record_property):
    three, one = indices
    mean, low, path = _recall_of(_client(local_cluster.url()), three, one, "hybrid_rrf", query_requests,
                                 tie_score=False)
    record_property(f"recall10_hybrid_rrf_{path}", round(mean, 4))
    print(f"\nhybrid_rrf as shipped ({path}): recall@10 of 3 shards against 1 shard = {mean:.4f} (lowest {low:.2f})")
    # neural-search 2.19 ranks each sub-query within each shard: RRF on several shards runs client-side
    assert path == "client"
    assert mean >= 0.95


# ------------------------------------------------------------------------- kill -9 during an ingest
def _victim(client, index: str, entry: str) -> str:
    """A node other than the one the client talks to that holds a primary of ``index``."""
    shards = client.cat.shards(index=index, format="json", h="prirep,node,state")
    names = sorted({s["node"] for s in shards if s["prirep"] == "p" and s["node"] and s["node"] != entry})
    assert names, f"no primary of {index} off {entry}: {shards}"
    return names[0]


@pytest.mark.cluster
@pytest.mark.models
@pytest.mark.data
def test_kill_9_of_a_data_node_during_ingest_loses_nothing(catalog, local_cluster, tmp_path, stranger_pid,
                                                            record_property):
    full, all_ids, _ = catalog
    path = tmp_path / "kill.jsonl"
    path.write_text("".join(full.read_text(encoding="utf-8").splitlines(keepends=True)[:N_KILL_INGEST]),
                    encoding="utf-8")
    ids = all_ids[:N_KILL_INGEST]
    entry = "node-0"
    url = {st.name: st.url for st in local_cluster.node_states()}[entry]
    client = _client(url)
    index = "cluster-ingest-kill"
    _cli("index", "create", index, "--heads", "none", "--shards", "3", "--replicas", "1", "--url", url, "--recreate")
    _health(client, index=index, wait_for_status="green", timeout="120s")
    victim = _victim(client, index, entry)
    victim_pid = _pids(local_cluster)[victim]
    # small batches and one encoder thread: many bulk requests, so the kill lands among them
    cmd = _ingest_cmd(path, index, url, tmp_path, "--threads", "1", "--batch-size", "16", "--bulk-docs", "32")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            st = client.indices.stats(index=index, metric="indexing")
            if st["_all"]["primaries"]["indexing"]["index_total"] > 0:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the ingest ended before any document was seen: nothing to kill it during"
        t_kill = time.monotonic()
        _kill(victim_pid)
        out, err = proc.communicate(timeout=900)
        took = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"ingest exit {proc.returncode} after {victim} was killed:\n{err[-4000:]}"
    report = json.loads(out)
    c = report["counts"]
    record_property("ingest_after_kill", json.dumps({**c, "bulk_retries": report.get("bulk_retries"),
                                                     "seconds_after_kill": round(took, 1)}))
    print(f"\ningest with {victim} killed: counts {c}, bulk rounds retried {report.get('bulk_retries')}, "
          f"finished {took:.1f} s after the kill")
    assert c["read"] == c["indexed"] + c["rejected"] + c["unchanged"] == len(ids)
    assert c["rejected"] == 0
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == len(ids)
    hits = client.search(index=index, body={"size": len(ids) + 10, "_source": False, "query": {"match_all": {}}})
    got = [h["_id"] for h in hits["hits"]["hits"]]
    assert len(got) == len(set(got)) == len(ids)               # 0 duplicates
    assert set(got) == set(ids)                                 # 0 lost

    # then the whole cluster crashes: the two other nodes are killed too, and one start recovers all three
    killed = {victim: victim_pid}
    for name, pid in _pids(local_cluster).items():
        if pid is not None:
            _kill(pid)
            killed[name] = pid
    _restart_after_kill(local_cluster, killed, stranger_pid)
    client = _client(local_cluster.url())
    health = _health(client, wait_for_status="green", wait_for_nodes="3", timeout="240s")
    assert health["status"] == "green" and health["number_of_nodes"] == 3
    assert client.count(index=index)["count"] == len(ids)
    client.indices.delete(index=index)


# ------------------------------------------------------------------------- kill -9 under a query load
@pytest.mark.cluster
@pytest.mark.models
@pytest.mark.data
def test_queries_keep_being_answered_when_a_node_is_killed(indices, query_requests, local_cluster, stranger_pid,
                                                           record_property):
    from query_builder import Searcher

    three, _ = indices
    entry = "node-0"
    url = {st.name: st.url for st in local_cluster.node_states()}[entry]
    client = _client(url, timeout=20)
    managers = [n["name"] for n in client.cat.nodes(format="json", h="name,cluster_manager")
                if n["cluster_manager"] == "*"]
    # the elected cluster manager when the client does not talk to it (a re-election too), else a data node
    victim = managers[0] if managers and managers[0] != entry else _victim(client, three, entry)
    victim_pid = _pids(local_cluster)[victim]
    searchers = [Searcher(client, p, index=three) for p in ("bm25", "hybrid_minmax", "dense_text")]
    for s in searchers:                          # probe capabilities and put pipelines before the clock runs
        s.search(query_requests[0])

    restarted: list[BaseException | None] = []

    def restart() -> None:
        try:
            _restart_after_kill(local_cluster, {victim: victim_pid}, stranger_pid)
            restarted.append(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            restarted.append(exc)

    load = QueryLoad(searchers, query_requests, 4)
    load.start()
    time.sleep(6)
    t_kill = time.monotonic()
    _kill(victim_pid)
    time.sleep(12)                                # the load goes on with a node down ...
    t_restart = time.monotonic()
    back = threading.Thread(target=restart, daemon=True)
    back.start()                                  # ... and while it comes back and its shards recover
    back.join(timeout=420)
    time.sleep(max(0.0, load.t0 + 30 - time.monotonic()))
    load.stop()
    assert restarted, "the killed node did not come back within 420 s"
    if restarted[0] is not None:
        raise restarted[0]

    summary = {"victim": victim, **load.summary(t_kill, t_restart)}
    record_property("query_load_kill", json.dumps(summary))
    print(f"\nquery load, 4 threads, {load.t_end - load.t0:.0f} s, {victim} killed at {t_kill - load.t0:.0f} s and "
          f"started again at {t_restart - load.t0:.0f} s: {summary}")
    assert summary["answered_while_down"] > 0, summary      # queries kept being answered with a node down
    assert any(t > t_kill + 10 for t in load.answered), summary   # and not only in the moments after the kill
    health = _health(client, wait_for_status="green", wait_for_nodes="3", timeout="240s")
    assert health["status"] == "green" and health["number_of_nodes"] == 3
