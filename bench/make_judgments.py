"""Build the benchmark judgment sets from the shared data (``../shared/data``) into a folder outside the repo.

Product ids are those ``bench/make_catalogs.py`` writes (IKEA: the article number; Grocery: the
fine class name; Product1M: the listing id), and the IKEA held-out products are its fixed test
split, so heads trained on the train split are evaluated on products they never saw.

Sets (one folder each, TREC ``qrels.txt`` + ``queries.jsonl``; ``judgments.json`` lists them
with the catalog each one searches):

- ``ikea_type_color``  "Chair, white" from each held-out product (deduplicated): grade 2 for
  every product of that type in exactly that colour, 1 for that type sharing a base colour.
- ``ikea_description``  a held-out product's description: every product with that very text
  (variants share descriptions); descriptions shared by more than 5 products are boilerplate
  ("5 year guarantee ...") and left out.
- ``ikea_rooms``       a room photo -> the products that appear in it.
- ``grocery_shelf``    a test-split shelf photo -> its product (a seeded sample per class).
- ``grocery_class``    a class name -> that product ("Oatly Natural Oatghurt"), and a coarse
  class name -> all its products ("Apple" -> the five apples).
- ``product1m_instance``  a Product1M instance label as a Chinese query ("sk2 神仙水") -> the
  listings of that instance.  ``product1m.jsonl``, the catalog those listings form (title and
  brand; the instance labels are *not* put in the catalog, they are the answers), is written too.
- ``zh_ikea`` / ``zh_grocery``  make_catalogs' hand-written Chinese queries.

``--split val`` writes the development sets instead: ``ikea_type_color_val`` and
``ikea_description_val`` from the IKEA val split, ``grocery_shelf_val`` from the Grocery val shelf
photos.  Choose profile settings on these, and report the test sets.

Usage: ``python bench/make_judgments.py --out ~/.cache/cmsearch/bench/judgments [--data ../shared/data]``
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import make_catalogs as mc  # noqa: E402

from evaluation.judgments import JudgedQuery, JudgmentSet, query_id_for, write_trec  # noqa: E402

DEFAULT_OUT = Path(os.environ.get("CMSEARCH_BENCH_DIR", Path.home() / ".cache" / "cmsearch" / "bench")) / "judgments"
MAX_SHARED_DESCRIPTION = 5


def _set(name: str, rows: list[tuple[str | None, str | None, dict[str, int]]]) -> JudgmentSet:
    """Queries from (text, image, grades), ids from their content, duplicates merged (max grade)."""
    merged: dict[str, JudgedQuery] = {}
    for text, image, grades in rows:
        qid = query_id_for(text, image)
        if qid in merged:
            old = dict(merged[qid].grades)
            for d, g in grades.items():
                old[d] = max(old.get(d, 0), g)
            grades = old
        merged[qid] = JudgedQuery(qid, text, Path(image) if image else None, grades)
    return JudgmentSet(name, tuple(merged.values()))


# --------------------------------------------------------------------------- IKEA
def ikea_type_color(records: list[dict], query_ids: list[str]) -> JudgmentSet:
    colors = mc._glossary("colors")
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_type[r["attributes"]["type"].lower()].append(r)
    rows = []
    for pid in query_ids:
        a = next(r for r in records if r["id"] == pid)["attributes"]
        if not a["color"]:
            continue
        want_base = mc.base_colors(a["color"], colors)
        grades = {}
        for r in by_type[a["type"].lower()]:
            c = r["attributes"]["color"]
            if c.lower() == a["color"].lower():
                grades[r["id"]] = 2
            elif want_base and want_base & mc.base_colors(c, colors):
                grades[r["id"]] = 1
        rows.append((f"{a['type']}, {a['color']}", None, grades))
    return _set("ikea_type_color", rows)


def ikea_description(records: list[dict], query_ids: list[str]) -> JudgmentSet:
    by_text: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if r["description"].strip():
            by_text[r["description"].strip()].append(r["id"])
    rows = []
    for pid in query_ids:
        text = next(r for r in records if r["id"] == pid)["description"].strip()
        if text and len(by_text[text]) <= MAX_SHARED_DESCRIPTION:
            rows.append((text, None, {d: 1 for d in by_text[text]}))
    return _set("ikea_description", rows)


def ikea_rooms(data_dir: Path, known: set[str]) -> JudgmentSet:
    path = mc._need(Path(data_dir) / "ikea" / "rooms.jsonl")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        room = json.loads(line)
        grades = {p: 1 for p in room.get("products", []) if p in known}
        image = (Path(data_dir) / "ikea" / room["image"]).resolve()
        if grades and image.is_file():
            rows.append((None, str(image), grades))
    return _set("ikea_rooms", rows)


# --------------------------------------------------------------------------- Grocery
def grocery_shelf(data_dir: Path, per_class: int, seed: int, split: str = "test") -> JudgmentSet:
    names = {c["id"]: c["name"] for c in mc.grocery_classes(data_dir)}
    by_class: dict[int, list[str]] = defaultdict(list)
    for s in mc.grocery_shelf(data_dir, split):
        by_class[s["class_id"]].append(s["image"])
    rng = random.Random(seed)
    rows = []
    for cid in sorted(by_class):
        photos = sorted(by_class[cid])
        for image in (rng.sample(photos, per_class) if per_class and len(photos) > per_class else photos):
            rows.append((None, image, {names[cid]: 1}))
    return _set("grocery_shelf", rows)


def grocery_class(data_dir: Path) -> JudgmentSet:
    classes = mc.grocery_classes(data_dir)
    rows = [(c["name"].replace("-", " "), None, {c["name"]: 1}) for c in classes]
    coarse: dict[str, dict[str, int]] = defaultdict(dict)
    for c in classes:
        coarse[c["coarse"].replace("-", " ")][c["name"]] = 1
    rows += [(name, None, grades) for name, grades in coarse.items()]
    return _set("grocery_class", rows)


# --------------------------------------------------------------------------- Product1M (Chinese)
def read_product1m(data_dir: Path) -> list[dict]:
    path = mc._need(Path(data_dir) / "product1m-zh" / "dev.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def product1m_catalog(rows: list[dict]) -> list[dict]:
    """Catalog records in the ingest format: the listing title, its brand; no category, no images."""
    out = []
    for r in rows:
        brands = [b for b in r.get("brands", []) if b]
        rec = {"id": str(r["id"]), "title": r["title"]}
        if brands:
            rec["brand"] = brands[0]
        out.append(rec)
    return out


def product1m_instance(rows: list[dict]) -> JudgmentSet:
    listings: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for inst in r.get("instances", []):
            listings[inst.strip()].add(str(r["id"]))
    return _set("product1m_instance", [(inst, None, {d: 1 for d in sorted(ids)})
                                       for inst, ids in sorted(listings.items()) if inst])


# --------------------------------------------------------------------------- Chinese (make_catalogs)
def zh_sets(records: list[dict], test_ids: list[str]) -> list[JudgmentSet]:
    by_catalog: dict[str, list] = defaultdict(list)
    for q in mc.zh_queries(records, test_ids):
        by_catalog[q["catalog"]].append((q["query"], None, {d: 1 for d in q["relevant"]}))
    return [_set(f"zh_{cat}", rows) for cat, rows in sorted(by_catalog.items())]


# --------------------------------------------------------------------------- writing
CATALOG_OF = {"ikea_type_color": "ikea", "ikea_description": "ikea", "ikea_rooms": "ikea", "zh_ikea": "ikea",
              "grocery_shelf": "grocery", "grocery_class": "grocery", "zh_grocery": "grocery",
              "product1m_instance": "product1m"}
DEV_SUFFIX = "_val"   # a development set searches the catalog of the set it is named after


def build_all(data_dir: Path, *, shelf_per_class: int = 5, seed: int = 0) -> tuple[list[JudgmentSet], list[dict]]:
    """Every judgment set, and the Product1M catalog records."""
    records = mc.ikea_records(data_dir)
    split = mc.ikea_split(records)
    sets = [ikea_type_color(records, split["test"]), ikea_description(records, split["test"]),
            ikea_rooms(data_dir, {r["id"] for r in records}),
            grocery_shelf(data_dir, shelf_per_class, seed), grocery_class(data_dir)]
    p1m = read_product1m(data_dir)
    sets.append(product1m_instance(p1m))
    sets += zh_sets(records, split["test"])
    return sets, product1m_catalog(p1m)


def build_dev(data_dir: Path, *, shelf_per_class: int = 5, seed: int = 0) -> list[JudgmentSet]:
    """The development sets: the same kinds of queries from the val splits."""
    records = mc.ikea_records(data_dir)
    val = mc.ikea_split(records)["val"]
    sets = [ikea_type_color(records, val), ikea_description(records, val),
            grocery_shelf(data_dir, shelf_per_class, seed, split="val")]
    return [replace(js, name=js.name + DEV_SUFFIX) for js in sets]


def write_all(out: Path, sets: list[JudgmentSet], p1m_catalog: list[dict]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for js in sets:
        write_trec(js, out / js.name)
        kinds = sorted({"image" if q.image else "text" for q in js})
        manifest[js.name] = {"catalog": CATALOG_OF[js.name.removesuffix(DEV_SUFFIX)], "queries": len(js), "inputs": kinds,
                             "judgments": sum(len(q.grades) for q in js)}
    if p1m_catalog:
        with (out / "product1m.jsonl").open("w", encoding="utf-8") as fh:
            for r in p1m_catalog:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "judgments.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder, outside the repo (default {DEFAULT_OUT})")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default $CMSEARCH_SHARED_DATA or ../shared/data)")
    ap.add_argument("--shelf-per-class", type=int, default=5, help="shelf photos per grocery class (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test: the sets to report (default); val: development sets to choose settings on")
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("CMSEARCH_SHARED_DATA") or mc.DEFAULT_DATA)
    if args.out.resolve().is_relative_to(REPO):
        ap.error("--out must be outside the repository (the data may not be copied into it)")
    try:
        if args.split == "val":
            sets, p1m = build_dev(data, shelf_per_class=args.shelf_per_class, seed=args.seed), []
        else:
            sets, p1m = build_all(data, shelf_per_class=args.shelf_per_class, seed=args.seed)
    except mc.DataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    manifest = write_all(args.out, sets, p1m)
    for name, m in manifest.items():
        print(f"{name:<20} {m['queries']:>5} queries  {m['judgments']:>6} judgments  {'+'.join(m['inputs']):<10} -> {m['catalog']}")
    if p1m:
        print(f"product1m catalog: {args.out / 'product1m.jsonl'} ({len(p1m)} listings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
