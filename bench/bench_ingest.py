"""Ingest benchmark: products/s of `cmsearch ingest` next to the encoders' own rate, and peak memory.

Two catalogs, built from the shared data into a temporary folder (image paths point back into
the data folder; nothing is copied):

- ``ikea-2k``: the IKEA catalog (2,191 products, 2,042 with one photo), as
  ``bench/make_catalogs.py`` writes it;
- ``mixed-10k``: IKEA plus every Grocery shelf photo (5,421) as a product of its own (title,
  brand and category of its class), topped up to 10,000 with IKEA products under new ids.

For each catalog, in separate child processes (so each peak RSS is its own):

1. **encoder-only rate**: a seeded random sample of the catalog's products, images decoded and
   preprocessed beforehand, then only ``encode_batch`` (text + image encoders, heads) timed,
   batch size as in the load: what the models alone can do on this machine, no I/O.  Measured
   right before and right after the load, and averaged (a shared machine's load drifts);
2. **ingest**: the full pipeline into a fresh index (read, validate, tokenize, fetch, decode,
   encode, bulk, OpenSearch indexing on the same cores), with its stage table.

Target: ingest >= 0.8 x encoder-only, peak RSS < 2 GB and flat from 2k to 10k.
Usage: python bench/bench_ingest.py [--sizes 2k,10k] [--url URL] [--models DIR] [--heads DIR|none]
Prints figures; asserts nothing; skips (exit 0) when the models are not built or data is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA") or REPO.parent / "shared" / "data")
SIZES = {"2k": None, "10k": 10_000}


def build_catalogs(out: Path, sizes: list[str]) -> dict[str, Path]:
    import make_catalogs as mc

    ikea = mc.ikea_records(DATA)
    paths = {}
    if "2k" in sizes:
        paths["ikea-2k"] = _write(out / "ikea_2k.jsonl", ikea)
    if "10k" in sizes:
        classes = {r["attributes"]["class_id"]: r for r in mc.grocery_records(DATA)}
        rows = list(ikea)
        for split in ("train", "val", "test"):
            for n, shelf in enumerate(mc.grocery_shelf(DATA, split)):
                c = classes[shelf["class_id"]]
                rows.append({"id": f"shelf-{split}-{n:04d}", "title": c["title"], "description": c["description"],
                             "brand": c["brand"], "category": c["category"], "images": [shelf["image"]],
                             "attributes": {"photo": "shelf", "class": c["id"]}})
        i = 0
        while len(rows) < SIZES["10k"]:
            r = dict(ikea[i % len(ikea)])
            r["id"] = f"{r['id']}-copy{i // len(ikea) + 1}"
            rows.append(r)
            i += 1
        paths["mixed-10k"] = _write(out / "mixed_10k.jsonl", rows[: SIZES["10k"]])
    return paths


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _encoders(args):
    from models.heads_registry import resolve_heads
    from models.manifest import default_models_dir
    from models.space import Space

    models = args.models or default_models_dir()
    return Space.load(models, resolve_heads(models, args.heads), strict=True, threads=args.threads).open_all()


# ---------------------------------------------------------------- child: encoder-only rate
def child_encode(args) -> dict:
    from plugin_ingest.catalog import Catalog
    from models.passage import passage_text
    from plugin_ingest.fetch import FetchPolicy, ImageFetcher
    from plugin_ingest.schema import validate

    enc = _encoders(args)
    cat = Catalog(args.catalog)
    products = [validate(r.data) for r in cat.records() if r.ok]
    sample = random.Random(7).sample(products, min(args.sample, len(products)))
    fetcher = ImageFetcher(cat.base_dir, policy=FetchPolicy(allow_dirs=(DATA,)))  # image paths point into DATA
    prepared = []
    for p in sample:  # decoding is not timed: the point is the models' own speed
        pixels = [enc.preprocess(enc.decode(fetcher.fetch(src))) for src in p.images]
        prepared.append((passage_text(p), pixels))
    bs = args.batch_size
    batches = [prepared[i:i + bs] for i in range(0, len(prepared), bs)]
    warm = batches[0]
    enc.embed_products([t for t, _ in warm], [px for _, px in warm])
    t0 = time.perf_counter()
    images = 0
    for b in batches:
        images += sum(len(pxs) for _, pxs in b)
        enc.embed_products([t for t, _ in b], [pxs for _, pxs in b])
    secs = time.perf_counter() - t0
    return {"products": len(prepared), "images": images, "seconds": secs, "rate": len(prepared) / secs,
            "describe": enc.describe(), "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------- child: ingest
def child_ingest(args) -> dict:
    from engine.client import ConnectionSettings
    from plugin_ingest.fetch import FetchPolicy
    from plugin_ingest.ingestor import IngestOptions, Ingestor

    enc = _encoders(args)
    client = ConnectionSettings.resolve(args.url).client()
    tmp = Path(args.work)
    opts = IngestOptions(index=args.index, recreate=True, batch_size=args.batch_size, progress=False,
                         rejects_path=tmp / f"{args.index}.rejects.jsonl",
                         checkpoint_path=tmp / f"{args.index}.ckpt.json", decode_workers=args.decode_workers,
                         fetch_policy=FetchPolicy(allow_dirs=(DATA,)))
    report = Ingestor(args.catalog, opts, client=client, encoders=enc).run()
    count = client.count(index=args.index)["count"]
    client.indices.delete(index=args.index)  # a benchmark leaves no data behind
    return {"report": report.to_dict(), "table": report.table(), "docs_in_index": count,
            "peak_rss_mb": _peak_rss_mb()}


def _child(mode: str, catalog: Path, args, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, f"--child-{mode}", str(catalog), "--batch-size", str(args.batch_size),
           "--sample", str(args.sample), *extra]
    if args.models:
        cmd += ["--models", str(args.models)]
    if args.heads:
        cmd += ["--heads", str(args.heads)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child {mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def skip_reason(models: Path | None) -> str | None:
    """Why an ingest benchmark cannot run here (no built models, no shared data), or None."""
    from models.manifest import ManifestError, load_manifest

    try:
        load_manifest(models)
    except ManifestError as exc:
        return f"the models are not built ({exc})"
    if not (DATA / "ikea" / "products.jsonl").is_file():
        return f"shared data not found at {DATA} (set CMSEARCH_SHARED_DATA)"
    return None


def bench_node(url: str | None):
    """(URL, the node to stop afterwards): ``url`` as given, else the benchmarks' own local node
    (``.state/bench-engine``), which is stopped afterwards only when this run started it."""
    if url is not None:
        return url, None
    from engine import LocalEngine

    engine = LocalEngine(state_dir=REPO / ".state" / "bench-engine", heap="1g")
    was_running = engine.url() is not None
    url = engine.start(exit_with_parent=not was_running, progress=lambda m: print(m, file=sys.stderr))
    return url, (None if was_running else engine)   # someone else's node: leave it running


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2k,10k")
    ap.add_argument("--url", default=None, help="cluster to use (default: a local node under .state/bench-engine)")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--heads", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--decode-workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=384, help="products in the encoder-only measurement")
    ap.add_argument("--child-encode", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-ingest", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--index", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child_encode or args.child_ingest:
        args.catalog = args.child_encode or args.child_ingest
        res = child_encode(args) if args.child_encode else child_ingest(args)
        print("RESULT " + json.dumps(res, ensure_ascii=False))
        return 0

    why = skip_reason(args.models)
    if why:
        print(f"skipped: {why}")
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]

    url, engine = bench_node(args.url)
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="cmsearch-bench-ingest-") as tmp:
            catalogs = build_catalogs(Path(tmp), sizes)
            for name, path in catalogs.items():
                # the encoder-only rate is measured right before and right after the load and
                # averaged: on a shared machine the cores' availability drifts during a long load
                print(f"[{name}] encoder-only rate on a sample ...", file=sys.stderr)
                before = _child("encode", path, args, [])
                print(f"[{name}] ingest ...", file=sys.stderr)
                ingest = _child("ingest", path, args, ["--url", url, "--index", f"bench-ingest-{name}",
                                                       "--work", tmp, "--decode-workers", str(args.decode_workers)])
                print(f"[{name}] encoder-only rate again ...", file=sys.stderr)
                after = _child("encode", path, args, [])
                encode = dict(before, rate=(before["rate"] + after["rate"]) / 2,
                              rates=[before["rate"], after["rate"]])
                results[name] = (encode, ingest)
                print(ingest["table"])
                print()
    finally:
        if engine is not None:
            engine.stop()

    print(f"machine: {platform.node()} {platform.machine()} cores={os.cpu_count()} date={time.strftime('%Y-%m-%d')}")
    first = next(iter(results.values()))[0]
    print(f"models: {first['describe']}")
    print(f"{'catalog':<10} {'products':>8} {'images':>7} {'ingest p/s':>10} {'encoder p/s':>11} {'ratio':>6} "
          f"{'encode busy':>11} {'ingest RSS MB':>13} {'wall s':>8} {'rejected':>8}")
    for name, (enc, ing) in results.items():
        rep = ing["report"]
        c = rep["counts"]
        rate = rep["products_per_second"]
        busy = rep["stages"]["encode"]["seconds"] / rep["wall_seconds"]
        print(f"{name:<10} {c['read']:>8} {c['images']:>7} {rate:>10.1f} {enc['rate']:>11.1f} "
              f"{rate / enc['rate']:>6.2f} {busy:>10.0%} {ing['peak_rss_mb']:>13.0f} {rep['wall_seconds']:>8.1f} "
              f"{c['rejected']:>8}")
    print("encoder p/s: encode_batch alone on a sample (" + ", ".join(
        f"{n}: {e['products']} products / {e['images']} images, before/after the load "
        f"{e['rates'][0]:.1f}/{e['rates'][1]:.1f}" for n, (e, _) in results.items()) + "), images decoded beforehand")
    print("encode busy: share of the load's wall time the encoder thread was encoding "
          "(near 100%: the other stages overlap with encoding instead of adding to it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
