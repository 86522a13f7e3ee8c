"""Vector memory options on real catalogs: bytes per product and k-NN recall@10 against full precision.

For each ``--source`` index (made by ``cmsearch ingest`` from a real catalog), copies of its products
are indexed once per vector option (``mappings.VectorOptions``: float32 or int8 scalar quantization
``sq``, with or without the raw image features), merged to one segment, and then:

- **bytes per product**: the vector files of the index (read from its shard directories): every one
  on disk (``vec`` floats, ``vex`` graphs, ``veq`` int8 copies, their metadata), and the *searched*
  share (graphs plus the vectors HNSW compares: the int8 copies when quantized, the floats
  otherwise), over the product count;
- **recall@10**: real queries (bench_query's text queries through e5 for ``text_vector``, its
  photos through the image tower and head for ``images.vector`` / ``fused_vector`` / the raw
  ``images.feature``) as plain k-NN queries on each field with k = ``--candidates`` (100, what the
  shipped profiles ask each retriever for), of which the first 10 count; recall is the share of the
  exact top 10 (brute force in numpy over the same vectors, products scored by their best image)
  that the index returns, and for ``sq`` also the share of the float32 index's own answer.

Run::

    python bench/bench_vectors.py --source scale-src [--source grocery-src] [--queries 100]

Asserts nothing; prints one table.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

OPTIONS = (("none", True), ("sq", True), ("none", False), ("sq", False))


def _matrix(docs: list[dict], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, product row of each) for a top-level or nested image field."""
    from mappings import fields as F

    rows, owners = [], []
    for i, d in enumerate(docs):
        if "." in field:
            for im in d.get(F.IMAGES) or ():
                v = im.get(field.split(".", 1)[1])
                if v is not None:
                    rows.append(v)
                    owners.append(i)
        elif d.get(field) is not None:
            rows.append(d[field])
            owners.append(i)
    m = np.asarray(rows, dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m, np.asarray(owners)


def exact_top(docs: list[dict], field: str, queries: np.ndarray, k: int = 10) -> list[set[str]]:
    from mappings import fields as F

    m, owners = _matrix(docs, field)
    out = []
    for q in queries:
        sims = m @ (q / np.linalg.norm(q))
        best: dict[int, float] = {}
        for j in np.argsort(-sims)[: k * 8]:
            o = int(owners[j])
            if o not in best:
                best[o] = float(sims[j])
            if len(best) == k:
                break
        out.append({docs[o][F.ID] for o in best})
    return out


def knn_top(client: Any, index: str, field: str, queries: np.ndarray, k: int = 10, candidates: int = 100
            ) -> list[set[str]]:
    """The top ``k`` of a k-NN query asking for ``candidates`` (the shipped profiles' k), as the
    retrievers run it."""
    from mappings import fields as F

    out = []
    for q in queries:
        knn = {"knn": {field: {"vector": [float(x) for x in q], "k": candidates}}}
        query = {"nested": {"path": F.IMAGES, "query": knn, "score_mode": "max"}} if "." in field else knn
        resp = client.search(index=index, body={"query": query, "size": k, "_source": False,
                                                "docvalue_fields": [F.ID], "stored_fields": "_none_"})
        out.append({h["fields"][F.ID][0] for h in resp["hits"]["hits"]})
    return out


def recall(got: list[set[str]], want: list[set[str]]) -> float:
    return float(np.mean([len(g & w) / max(1, len(w)) for g, w in zip(got, want)]))


def query_vectors(space: Any, n: int) -> dict[str, np.ndarray]:
    import bench_query as bq

    qs = bq.make_queries(n)
    texts = [q["text"] for q in qs["text"]]
    text = np.stack([np.asarray(space.embed_query(text=t).text, np.float32) for t in texts])
    img, feat = [], []
    for q in qs["photo"]:
        e = space.embed_query(images=[Path(q["image"]).read_bytes()], names=[q["image"]])
        img.append(np.asarray(e.image, np.float32))
        feat.append(np.asarray(e.image_feature, np.float32))
    return {"text": text, "image": np.stack(img), "feature": np.stack(feat)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", action="append", required=True)
    ap.add_argument("--queries", type=int, default=100, help="text and photo queries each")
    ap.add_argument("--candidates", type=int, default=100, help="k of each k-NN query (its top 10 count)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--url", default=None)
    args = ap.parse_args(argv)

    import bench_query as bq
    from bench_scale import VECTOR_FILES, build, index_sizes, source_documents
    from engine.client import ConnectionSettings
    from mappings import VectorOptions, fields as F
    from query_builder import space_for_index

    client = ConnectionSettings.resolve(args.url, timeout=600).client()
    load0 = os.getloadavg()
    lines = []
    for source in args.source:
        mapping = client.indices.get_mapping(index=source)[source]["mappings"]
        docs = source_documents(client, source)
        space = space_for_index(client, source)
        qv = query_vectors(space, args.queries)
        checks = [(F.TEXT_VECTOR, "text"), (F.nested(F.IMAGE_VECTOR), "image"), (F.FUSED_VECTOR, "image"),
                  (F.nested(F.IMAGE_FEATURE), "feature")]
        exact = {f: exact_top(docs, f, qv[q]) for f, q in checks}
        float_answers: dict[tuple[str, bool], dict[str, list[set[str]]]] = {}
        for quant, feat in OPTIONS:
            opts = VectorOptions(quantization=quant, image_feature=feat)
            name = f"bench-vectors-{source}-{quant}-{'feat' if feat else 'nofeat'}"
            build(client, name, docs, len(docs), mapping, opts, log=lambda m: None)
            sizes = index_sizes(client, name)
            files = sizes["files"]
            on_disk = sum(files.get(k, 0) for k in VECTOR_FILES)
            searched = files.get("vex", 0) + (files.get("veq", 0) if files.get("veq") else files.get("vec", 0))
            rec, vs_float = {}, {}
            for f, q in checks:
                if f == F.nested(F.IMAGE_FEATURE) and not feat:
                    continue
                got = knn_top(client, name, f, qv[q], candidates=args.candidates)
                rec[f] = recall(got, exact[f])
                if quant == "none":
                    float_answers.setdefault((source, feat), {})[f] = got
                else:
                    vs_float[f] = recall(got, float_answers[(source, feat)][f])
            lines.append((source, len(docs), opts, on_disk / len(docs), searched / len(docs),
                          sizes["store_bytes"] / len(docs), rec, vs_float))
            if not args.keep:
                client.indices.delete(index=name)
    load1 = os.getloadavg()
    print(f"\nVector options, bytes per product and k-NN recall@10 ({args.queries} text + {args.queries} photo "
          f"queries per catalog, k-NN k={args.candidates}); {bq.machine_line()}; load {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"{'source':<12} {'products':>8} {'vectors':<44} {'vec B/p':>8} {'searched B/p':>12} {'disk B/p':>9} | "
          "recall@10 vs exact (vs float32 HNSW) per field")
    for source, n, opts, on_disk, searched, disk, rec, vs_float in lines:
        cells = "; ".join(f"{f} {r:.3f}" + (f" ({vs_float[f]:.3f})" if f in vs_float else "") for f, r in rec.items())
        print(f"{source:<12} {n:>8} {opts.describe():<44} {on_disk:>8.0f} {searched:>12.0f} {disk:>9.0f} | {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
