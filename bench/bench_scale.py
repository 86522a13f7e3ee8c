"""Scale benchmark: product indices of 10,000 to 1,000,000 products, built and searched on this machine.

The products are real ones replicated with noise: every document of a ``--source`` index (one
``cmsearch ingest`` made from a real catalog, e.g. IKEA) is copied under new ids until the index
holds N products, each copy's vectors moved by Gaussian noise and re-normalized (cosine about
0.96 to the original), so the HNSW graphs hold N distinct points of the real dimensions and the
text fields are real words.  The copy records the source's space in its ``_meta``, so the real
query encoders and the shipped profile search it as they would a catalog of that size.

Each size is built the way that fits a small machine: replicas 0, refresh off and an async
translog while bulk loading, then one force merge to a single segment (k-NN walks one graph per
segment), then refresh back on.  Reported per size: bulk throughput and build time (load, merge),
index size on disk, the vector files' bytes per product (read from the shard directories: the
float vectors ``vec``, the graphs ``vex``, int8 copies ``veq`` with ``--quantize sq``), node heap
and RSS, and text, photo and text+photo p50/p99 end to end and the engine's ``took``, measured
with ``bench_query``'s real queries and timing seams.  A last line fits latency against
log(N) and projects 1,000,000 (a projection, not a measurement)::

    cmsearch ingest W/ikea.jsonl --index scale-src --heads HEADS --create
    python bench/bench_scale.py --source scale-src --sizes 10000,100000 [--quantize sq]
        [--no-image-feature] [--engine-dir .state/scale-engine] [--keep] [--build-nice 10]

Builds run at ``--build-nice`` (the node's threads and this process), so the other work on a
shared machine keeps its cores; the searches are measured at normal priority.

``--engine-dir`` starts (and afterwards stops) a node of its own under that directory, so the
benchmark never shares the node other tests use; without it ``--url`` / ``OPENSEARCH_URL`` is
used.  Asserts nothing; prints one table (and ``--json``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

NOISE = 0.3          # norm of the noise added to a unit vector before re-normalizing
KINDS = ("text", "photo", "text+photo")


# --------------------------------------------------------------------------- the products
def source_documents(client: Any, index: str) -> list[dict]:
    """Every document of ``index`` with its vectors (from ``_source``), by scrolling."""
    docs: list[dict] = []
    resp = client.search(index=index, body={"size": 500, "query": {"match_all": {}}}, params={"scroll": "2m"})
    while True:
        hits = resp["hits"]["hits"]
        if not hits:
            break
        docs.extend(h["_source"] for h in hits)
        resp = client.scroll(body={"scroll_id": resp["_scroll_id"], "scroll": "2m"})
    try:
        client.clear_scroll(body={"scroll_id": resp["_scroll_id"]})
    except Exception:  # noqa: BLE001 - the scroll expires anyway
        pass
    return docs


def _noisy(v: list[float], rng: Any, decimals: int = 5) -> list[float]:
    import numpy as np

    a = np.asarray(v, dtype=np.float32)
    a = a + rng.standard_normal(a.shape[0]).astype(np.float32) * (NOISE / math.sqrt(a.shape[0]))
    a /= np.linalg.norm(a) or 1.0
    return np.round(a, decimals).tolist()


def replicas(docs: list[dict], start: int, stop: int, seed: int, keep_features: bool) -> Iterator[tuple[str, dict]]:
    """Products ``start`` .. ``stop - 1`` of the replicated catalog: (id, document); the first
    ``len(docs)`` are the source's own products, unchanged, the rest noisy copies under new ids."""
    import numpy as np

    from mappings import fields as F

    for i in range(start, stop):
        src = docs[i % len(docs)]
        rng = np.random.default_rng(seed * 1_000_003 + i)
        doc = dict(src)
        if i < len(docs):            # the first copy is the real product itself
            if not keep_features and src.get(F.IMAGES):
                doc[F.IMAGES] = [{k: v for k, v in im.items() if k != F.IMAGE_FEATURE} for im in src[F.IMAGES]]
            yield src[F.ID], doc
            continue
        doc_id = f"{src[F.ID]}~{i // len(docs)}"
        doc[F.ID] = doc_id
        for name in (F.TEXT_VECTOR, F.FUSED_VECTOR):
            if name in src:
                doc[name] = _noisy(src[name], rng)
        images = []
        for im in src.get(F.IMAGES) or ():
            entry = {F.IMAGE_URL: im.get(F.IMAGE_URL)}
            if F.IMAGE_VECTOR in im:
                entry[F.IMAGE_VECTOR] = _noisy(im[F.IMAGE_VECTOR], rng)
            if keep_features and F.IMAGE_FEATURE in im:
                entry[F.IMAGE_FEATURE] = _noisy(im[F.IMAGE_FEATURE], rng)
            images.append(entry)
        if images:
            doc[F.IMAGES] = images
        yield doc_id, doc


# --------------------------------------------------------------------------- building
def build(client: Any, name: str, docs: list[dict], n: int, source_mapping: dict, vectors: Any, *,
          seed: int = 0, chunk: int = 200, log=print) -> dict[str, float]:
    """Create ``name`` (the source's space, these vector options), load ``n`` products, merge."""
    from opensearchpy import helpers

    from mappings import VectorDims, fields as F, product_index_body
    from models.identity import META_KEY

    props = source_mapping["properties"]
    dims = VectorDims(shared=int(props[F.TEXT_VECTOR]["dimension"]),
                      image_feature=int(props[F.IMAGES]["properties"][F.IMAGE_FEATURE]["dimension"]))
    meta = {META_KEY: (source_mapping.get("_meta") or {}).get(META_KEY)}
    body = product_index_body(dims, meta=meta, vectors=vectors)
    # no compound files: a small merged segment would otherwise hide its vector files inside a .cfs
    body["settings"]["index"].update({"refresh_interval": "-1", "number_of_replicas": 0, "compound_format": "false",
                                      "translog": {"durability": "async", "flush_threshold_size": "1gb"}})
    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    client.indices.create(index=name, body=body)

    def actions():
        for i, (doc_id, doc) in enumerate(replicas(docs, 0, n, seed, vectors.image_feature)):
            if i == n // 2:
                # two segments at least, so the force merge writes a fresh one: a lone flushed
                # segment stays a compound file (.cfs), which hides the vector files' sizes
                client.indices.refresh(index=name, request_timeout=1800)
            yield {"_index": name, "_id": doc_id, "_source": doc}

    t0 = time.perf_counter()
    done = 0
    last = t0
    for ok, info in helpers.streaming_bulk(client, actions(), chunk_size=chunk, max_chunk_bytes=16 << 20,
                                           raise_on_error=True, request_timeout=600):
        done += 1
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"  {name}: {done:,}/{n:,} loaded, {done / (last - t0):.0f} products/s")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    client.indices.refresh(index=name, request_timeout=1800)
    client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=7200)
    client.indices.put_settings(index=name, body={"index": {"refresh_interval": "1s",
                                                            "translog": {"durability": "request"}}})
    client.indices.refresh(index=name, request_timeout=1800)
    merge_s = time.perf_counter() - t1
    return {"load_s": load_s, "merge_s": merge_s, "bulk_per_s": n / load_s, "build_s": load_s + merge_s}


def renice(pids: list[int | None], niceness: int) -> None:
    """Set the niceness of every thread of these processes (Linux nice is per thread), so a build
    yields the cores to other work and the searches after it are measured at normal priority;
    raising priority back needs root, and is skipped (silently) without it."""
    for pid in pids:
        if not pid:
            continue
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
            except (OSError, ValueError):
                pass


# --------------------------------------------------------------------------- measuring the index and node
VECTOR_FILES = ("vec", "vex", "vem", "veq", "vemq", "vemf")


def _vint(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def compound_entries(cfe: Path) -> dict[str, int]:
    """Bytes per file extension inside a Lucene compound file, from its entries file (``.cfe``,
    Lucene90CompoundFormat: index header, vInt count, then name / offset / length per file)."""
    b = cfe.read_bytes()
    i = 4                                     # codec magic
    n, i = _vint(b, i)
    i += n + 4 + 16                           # codec name, version, segment id
    i += 1 + b[i]                             # suffix
    count, i = _vint(b, i)
    out: dict[str, int] = {}
    for _ in range(count):
        n, i = _vint(b, i)
        name = b[i:i + n].decode()
        i += n
        length = int.from_bytes(b[i + 8:i + 16], "little")   # offset, then length
        i += 16
        ext = name.rsplit(".", 1)[-1]
        out[ext] = out.get(ext, 0) + length
    return out


def index_sizes(client: Any, name: str) -> dict[str, Any]:
    """Store size, segments, Lucene docs and bytes per file extension of ``name``.

    The extension sizes are summed over the shard directories on this machine: the stats API's
    ``include_segment_file_sizes`` keeps one file per extension, and the vector fields each
    have their own ``.vec`` / ``.vex`` files.  Empty when the node's data is elsewhere."""
    stats = client.indices.stats(index=name, metric="store,segments,docs")["indices"][name]["primaries"]
    uuid = client.indices.get_settings(index=name)[name]["settings"]["index"]["uuid"]
    files: dict[str, int] = {}
    for node in client.nodes.stats(metric="fs")["nodes"].values():
        for data in node.get("fs", {}).get("data", []):
            for f in Path(data["path"], "indices", uuid).glob("*/index/*"):
                if not f.is_file() or "." not in f.name:
                    continue
                ext = f.name.rsplit(".", 1)[1]
                # a small segment lives in a compound file: count what it holds by extension
                parts = compound_entries(f.with_suffix(".cfe")) if ext == "cfs" else {ext: f.stat().st_size}
                for e, size in parts.items():
                    files[e] = files.get(e, 0) + size
    return {"store_bytes": int(stats["store"]["size_in_bytes"]), "segments": int(stats["segments"]["count"]),
            "lucene_docs": int(stats["docs"]["count"]), "files": files}


def node_memory(client: Any, pid: int | None) -> dict[str, float]:
    nodes = client.nodes.stats(metric="jvm")["nodes"]
    jvm = next(iter(nodes.values()))["jvm"]["mem"]
    out = {"heap_used_mb": jvm["heap_used_in_bytes"] / 2**20, "heap_max_mb": jvm["heap_max_in_bytes"] / 2**20}
    if pid:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return out


def measure_queries(client: Any, index: str, space: Any, queries: dict[str, list[dict]], warmup: int,
                    profile: str = "hybrid_minmax") -> dict[str, Any]:
    import bench_query as bq
    from query_builder import load_profile

    TimedSearcher = bq.timed_searcher_class()
    tclient = bq.TimedClient(client)
    out = {}
    for kind in KINDS:
        # the searcher holds the space, as a real one does: its no-words floors (and the real-match
        # count they bring) are part of a shipped text query; the query is encoded (and timed)
        # before the search, which then finds its vectors there
        searcher = TimedSearcher(tclient, load_profile(profile), space, index=index, vocabulary_max_age_s=float("inf"))
        out[kind] = bq.measure(queries[kind], searcher, tclient, space, 10, warmup)
    return out


# --------------------------------------------------------------------------- reporting
def projection(points: list[tuple[int, float]], at: int) -> float | None:
    """Least-squares line of latency against log10(N), read at ``at`` (None with < 2 sizes)."""
    if len(points) < 2:
        return None
    xs = [math.log10(n) for n, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my + b * (math.log10(at) - mx)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="an index made by `cmsearch ingest` from a real catalog")
    ap.add_argument("--sizes", default="10000,100000", help="products per index, comma-separated")
    ap.add_argument("--quantize", choices=("none", "sq"), default="none")
    ap.add_argument("--no-image-feature", action="store_true", help="indices without raw image features")
    ap.add_argument("--queries", type=int, default=300, help="queries per request kind")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--prefix", default="bench-scale")
    ap.add_argument("--keep", action="store_true", help="keep the indices (default: delete each after measuring)")
    ap.add_argument("--reuse", action="store_true", help="measure an index of that name that already exists")
    ap.add_argument("--engine-dir", type=Path, default=None,
                    help="start a node of its own under this directory (and stop it at the end)")
    ap.add_argument("--heap", default="1g", help="heap of the node --engine-dir starts")
    ap.add_argument("--build-nice", type=int, default=10,
                    help="niceness of the node and this process while building (searches run at 0)")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    import bench_query as bq
    from cmsearch.space_options import open_space
    from engine.client import ConnectionSettings
    from mappings import VectorOptions

    if not (bq.DATA / "ikea" / "products.jsonl").is_file():
        print(f"skipped: shared data not found at {bq.DATA} (set CMSEARCH_SHARED_DATA)")
        return 0
    engine = None
    pid = None
    url = args.url
    if args.engine_dir:
        from engine import LocalEngine

        engine = LocalEngine(state_dir=args.engine_dir, heap=args.heap)
        if engine.url() is None:
            print(engine.start(timeout=300), file=sys.stderr)
        url = engine.url()
        pid = engine.pid()
    try:
        client = ConnectionSettings.resolve(url, timeout=600).client()
        if pid is None:
            pid = int(next(iter(client.nodes.info(metric="process")["nodes"].values()))["process"]["id"])
        vectors = VectorOptions(quantization=args.quantize, image_feature=not args.no_image_feature)
        source_mapping = client.indices.get_mapping(index=args.source)[args.source]["mappings"]
        docs = source_documents(client, args.source)
        print(f"source {args.source}: {len(docs):,} products", file=sys.stderr)
        queries = bq.make_queries(args.queries)
        space = None
        rows = []
        started = dt.datetime.now(dt.timezone.utc)
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            name = f"{args.prefix}-{n // 1000}k" + ("-sq" if vectors.quantization == "sq" else "") \
                + ("" if vectors.image_feature else "-nofeat")
            load0 = os.getloadavg()[0]
            if args.reuse and client.indices.exists(index=name):
                times = {"load_s": float("nan"), "merge_s": float("nan"), "bulk_per_s": float("nan"),
                         "build_s": float("nan")}
            else:
                print(f"building {name} ({n:,} products, {vectors.describe()})", file=sys.stderr)
                renice([pid, os.getpid()], args.build_nice)
                try:
                    times = build(client, name, docs, n, source_mapping, vectors,
                                  log=lambda m: print(m, file=sys.stderr, flush=True))
                finally:
                    renice([pid, os.getpid()], 0)
                print(f"  built in {times['build_s']:.0f} s (load {times['load_s']:.0f}, merge {times['merge_s']:.0f})",
                      file=sys.stderr, flush=True)
            sizes = index_sizes(client, name)
            if space is None:
                space, _ = open_space(client, name, args.models, args.heads)
            t0 = time.perf_counter()
            series = measure_queries(client, name, space, queries, args.warmup)
            mem = node_memory(client, pid)
            row = {"name": name, "products": n, "load_avg_build": load0, "load_avg_end": os.getloadavg()[0],
                   **times, **sizes, **mem, "query_s": time.perf_counter() - t0,
                   "latency": {k: {"p50": bq.pct(s.total, 50), "p99": bq.pct(s.total, 99),
                                   "took_p50": bq.pct(s.took, 50), "took_p99": bq.pct(s.took, 99),
                                   "engine_p99": bq.pct(s.phases["engine"], 99), "n": len(s.total),
                                   "errors": s.errors[:3]} for k, s in series.items()}}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)   # each size's figures, also if a later one is cut short
            if not args.keep:
                client.indices.delete(index=name)
        print_report(rows, started, vectors, url)
        if args.json:
            args.json.write_text(json.dumps({"date": started.isoformat(), "machine": bq.machine_line(),
                                             "rows": rows}, indent=1), encoding="utf-8")
    finally:
        if engine is not None:
            engine.stop()
    return 0


def print_report(rows: list[dict], started: dt.datetime, vectors: Any, url: str | None) -> None:
    import bench_query as bq

    print(f"\nScale benchmark, {started:%Y-%m-%d %H:%M} UTC, {bq.machine_line()}; {vectors.describe()}")
    print(f"{'products':>9} {'load/s':>7} {'build s':>8} {'merge s':>8} {'disk MB':>8} {'vec B/p':>8} "
          f"{'hot B/p':>8} {'heap MB':>8} {'RSS MB':>7} {'load':>5} | "
          + " | ".join(f"{k:<10} p50   p99  took50 took99" for k in KINDS))
    for r in rows:
        files = r["files"]
        vec = sum(files.get(k, 0) for k in VECTOR_FILES)
        # what k-NN search reads: the graphs and the vectors it compares (int8 copies when quantized)
        hot = files.get("vex", 0) + (files.get("veq", 0) if files.get("veq") else files.get("vec", 0))
        lat = r["latency"]
        print(f"{r['products']:>9,} {r['bulk_per_s']:>7.0f} {r['build_s']:>8.0f} {r['merge_s']:>8.0f} "
              f"{r['store_bytes'] / 2**20:>8.0f} {vec / r['products']:>8.0f} {hot / r['products']:>8.0f} "
              f"{r['heap_used_mb']:>8.0f} {r.get('rss_mb', float('nan')):>7.0f} {r['load_avg_end']:>5.1f} | "
              + " | ".join(f"{'':<10}{lat[k]['p50']:>5.1f} {lat[k]['p99']:>5.1f} {lat[k]['took_p50']:>6.0f} "
                           f"{lat[k]['took_p99']:>6.0f}" for k in KINDS))
    for kind in KINDS:
        for q in ("p50", "p99"):
            pts = [(r["products"], r["latency"][kind][q]) for r in rows if not math.isnan(r["latency"][kind][q])]
            proj = projection(pts, 1_000_000)
            if proj is not None:
                print(f"projection (not measured): {kind} {q} at 1,000,000 products ~ {proj:.0f} ms "
                      f"(line through log10(N) of {', '.join(f'{n:,}' for n, _ in pts)})")
    print("vec B/p: every vector file (vec, vex, vem, veq, ...) per product; hot B/p: the HNSW graphs plus the "
          "vectors k-NN compares (int8 copies when quantized) per product.")


if __name__ == "__main__":
    sys.exit(main())
