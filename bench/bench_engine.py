"""Engine benchmark: cold start to green, and bulk indexing of small documents with 384-d vectors.

Prints figures; asserts nothing.  Uses its own state directory (a throw-away node), so a node the
user runs is untouched.  Usage: python bench/bench_engine.py [--docs 10000] [--runs 1]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from opensearchpy import helpers

from engine import LocalEngine
from engine.client import ConnectionSettings
from mappings import VectorDims, fields as F
from plugin_ingest.index_admin import create_product_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=500)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cmsearch-bench-") as tmp:
        eng = LocalEngine(state_dir=Path(tmp) / "engine")
        eng.build()  # not part of the cold start: Maven runs once per machine
        starts, rates = [], []
        for run in range(args.runs):
            t0 = time.perf_counter()
            url = eng.start(exit_with_parent=True)
            starts.append(time.perf_counter() - t0)
            client = ConnectionSettings.resolve(url).client()
            name = f"bench-{run}"
            create_product_index(client, name, VectorDims(shared=384, image_feature=1280), recreate=True)
            client.indices.put_settings(index=name, body={"index": {"refresh_interval": "-1"}})
            rng = np.random.default_rng(run)
            vecs = rng.standard_normal((args.docs, 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

            def actions():
                for i in range(args.docs):
                    yield {"_index": name, "_id": str(i), "_source": {
                        F.ID: str(i), F.TITLE: f"商品 {i} 标题 product title {i % 97}", F.BRAND: f"b{i % 31}",
                        F.TEXT_VECTOR: vecs[i].tolist()}}

            t0 = time.perf_counter()
            ok = sum(1 for good, _ in helpers.streaming_bulk(client, actions(), chunk_size=args.chunk,
                                                             raise_on_error=True) if good)
            client.indices.put_settings(index=name, body={"index": {"refresh_interval": "1s"}})
            client.indices.refresh(index=name)
            elapsed = time.perf_counter() - t0
            assert client.count(index=name)["count"] == ok == args.docs
            rates.append(args.docs / elapsed)
            eng.stop()

    print(f"machine: {platform.node()} {platform.machine()} cores={__import__('os').cpu_count()} "
          f"date={time.strftime('%Y-%m-%d')} runs={args.runs}")
    print(f"{'figure':44} {'median':>10} {'min':>10} {'max':>10}")
    print(f"{'engine cold start to green (s)':44} {np.median(starts):10.1f} {min(starts):10.1f} {max(starts):10.1f}")
    print(f"{f'bulk {args.docs} docs, 384-d vectors (docs/s)':44} {np.median(rates):10.0f} {min(rates):10.0f} {max(rates):10.0f}")


if __name__ == "__main__":
    main()
