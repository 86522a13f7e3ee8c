"""Ingest benchmark of ``--part``: one worker loading a catalog vs two workers loading half each.

The catalog is the first ``--products`` products of the IKEA catalog (``bench/make_catalogs.py``,
image paths pointing into the shared data folder; nothing is copied).  Each run is the real
command, ``cmsearch ingest ... --create --json``, in child processes, into a fresh index:

- **1 worker**: the whole catalog in one process (run before and after the 2-worker run, since
  a shared machine's load drifts);
- **2 workers**: ``--part 1/2`` and ``--part 2/2`` started together, one index.

Wall time is from starting the processes to the last one ending (model loading included, once
per process); products/s is the catalog's products over that wall time.  The machine's load
average (1 minute) is read before and after each run: other work on the machine takes cores
from the encoders.  On a machine with few cores no gain is expected: the encoders already use
every core in one worker (``--threads``: onnxruntime threads per encoder, default one per core),
so two workers share the same cores and each loads its own copy of the models.  Parts pay off
across machines, each with its own cores.

Usage: python bench/bench_ingest_parts.py [--products 600] [--url URL] [--threads N]
Prints figures; asserts nothing; skips (exit 0) when the models are not built or data is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA") or REPO.parent / "shared" / "data")


def _load1() -> float:
    return os.getloadavg()[0]


def run_workers(catalog: Path, parts: int, url: str, args, work: Path) -> dict:
    """``parts`` concurrent `cmsearch ingest` processes (``--part i/parts``; none for 1) into a fresh index."""
    index = f"bench-parts-{parts}-{uuid.uuid4().hex[:6]}"
    base = [sys.executable, "-m", "cmsearch.cli", "ingest", str(catalog), "--index", index, "--create", "--json",
            "--no-progress", "--accept-rejects", "--allow-dir", str(DATA), "--url", url,
            "--batch-size", str(args.batch_size)]
    if args.threads:
        base += ["--threads", str(args.threads)]
    if args.models:
        base += ["--models", str(args.models)]
    load_before = _load1()
    t0 = time.perf_counter()
    procs = []
    for i in range(1, parts + 1):
        extra = ["--part", f"{i}/{parts}"] if parts > 1 else []
        files = ["--rejects", str(work / f"{index}.{i}.rejects.jsonl"),
                 "--checkpoint", str(work / f"{index}.{i}.ckpt.json")]
        procs.append(subprocess.Popen(base + extra + files, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=REPO))
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    load_after = _load1()
    reports = []
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"ingest failed (exit {p.returncode}):\n{err[-3000:]}")
        reports.append(json.loads(out))
    from engine.client import ConnectionSettings

    client = ConnectionSettings.resolve(url).client()
    client.indices.refresh(index=index)
    docs = client.count(index=index)["count"]
    client.indices.delete(index=index)      # a benchmark leaves no data behind
    indexed = sum(r["counts"]["indexed"] for r in reports)
    return {"parts": parts, "wall": wall, "docs": docs, "indexed": indexed,
            "load_wall": [r["wall_seconds"] for r in reports],
            "encode_busy": [r["stages"]["encode"]["seconds"] / r["wall_seconds"] for r in reports],
            "load_before": load_before, "load_after": load_after}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=600, help="first N products of the IKEA catalog")
    ap.add_argument("--url", default=None, help="cluster to use (default: a local node under .state/bench-engine)")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads per encoder, per worker")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    from bench_ingest import bench_node, skip_reason

    why = skip_reason(args.models)
    if why:
        print(f"skipped: {why}")
        return 0
    import make_catalogs as mc
    url, engine = bench_node(args.url)
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="cmsearch-bench-parts-") as tmp:
            work = Path(tmp)
            catalog = work / "ikea.jsonl"
            rows = mc.ikea_records(DATA)[: args.products]
            catalog.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            for parts in (1, 2, 1):
                print(f"{parts} worker(s) ...", file=sys.stderr)
                runs.append(run_workers(catalog, parts, url, args, work))
    finally:
        if engine is not None:
            engine.stop()

    print(f"machine: {platform.node()} {platform.machine()} cores={os.cpu_count()} date={time.strftime('%Y-%m-%d')}"
          f" threads/encoder={args.threads or 'default (one per core)'}")
    print(f"catalog: first {len(rows)} IKEA products")
    print(f"{'workers':>7} {'wall s':>7} {'products/s':>10} {'docs':>5} {'per-worker load s':>18} "
          f"{'encode busy':>12} {'load avg before/after':>22}")
    for r in runs:
        print(f"{r['parts']:>7} {r['wall']:>7.1f} {len(rows) / r['wall']:>10.1f} {r['docs']:>5} "
              f"{'/'.join(f'{w:.1f}' for w in r['load_wall']):>18} "
              f"{'/'.join(f'{b:.0%}' for b in r['encode_busy']):>12} "
              f"{r['load_before']:>10.2f} / {r['load_after']:<9.2f}")
    one = (runs[0]["wall"] + runs[2]["wall"]) / 2
    print(f"2 workers vs 1 (mean of the two 1-worker runs): {one / runs[1]['wall']:.2f}x")
    print("wall: start of the processes to the end of the last (model loading included); "
          "per-worker load s: the load itself, as each summary reports it; "
          "encode busy: share of that time its encoder thread was encoding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
