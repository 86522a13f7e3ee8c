"""Turn the shared IKEA and Grocery data sets into catalogs in our JSONL ingest format.

The development data is read-only and lives outside the repository (``../shared/data``); this
script writes catalogs *about* it into a work folder, with image paths pointing back into the
data folder (absolute), so nothing is copied. Every product gets a bilingual title built from the
glossaries in ``models/glossary`` ("Chinese / English"), because Chinese queries against
English-only product text retrieve poorly (precision@10 ~0.13 vs 0.81 in English with
multilingual-e5-small): the catalog must carry Chinese text for Chinese search to work.

Outputs (``python bench/make_catalogs.py --out DIR``):

- ikea.jsonl                 2,191 products; category "Group > Type"; brand IKEA; 1 photo each
- grocery.jsonl              81 products; category "Fruit|Vegetables|Packages > coarse > product";
                             brand from the class-name prefix of packaged goods; iconic photo
- grocery_with_shelf.jsonl   the same, plus the train-split shelf photos as extra product images
- ikea_split.json            fixed product split (train / val / test = 400 held-out products)
- queries/ikea_type_color.jsonl, queries/ikea_description.jsonl   one query per test product
- queries/grocery_shelf_{train,val,test}.jsonl  shelf photo -> product
- queries/grocery_text.jsonl  class name and description -> product
- queries/zh.jsonl            hand-written Chinese queries with their relevant products

Other tools reuse the functions (``ikea_records``, ``grocery_records``, ``zh_queries`` ...).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "models" / "glossary"
DEFAULT_DATA = REPO.parent / "shared" / "data"
IKEA_TEST, IKEA_VAL, SPLIT_SEED = 400, 200, 20240


class DataMissing(RuntimeError):
    """The shared data folder (or one data set in it) is not there."""


def _glossary(name: str) -> dict:
    return json.loads((GLOSSARY / f"{name}.json").read_text(encoding="utf-8"))


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataMissing(f"{path} not found: the shared development data is not available here "
                          "(set --data or CMSEARCH_SHARED_DATA)")
    return path


# --------------------------------------------------------------------------- colours
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def _color_words(color: str) -> list[list[str]]:
    return [_WORD.findall(part.lower()) for part in color.split(",")]


def color_zh(color: str, glossary: dict | None = None) -> str:
    """IKEA colour text -> Chinese, longest phrase first; unknown words (series names) dropped.

    "White stained oak effect" -> "白色染色橡木纹"; "Nolhaga dark grey" -> "深灰色";
    parts separated by commas are joined with "、".
    """
    g = glossary or _glossary("colors")
    phrases, mods = g["phrases"], g["modifiers"]
    longest = max(len(p.split()) for p in phrases)
    parts = []
    for words in _color_words(color):
        out, i = [], 0
        while i < len(words):
            if words[i] in mods and i + 1 < len(words) and words[i + 1] in phrases:
                out.append(mods[words[i]] + phrases[words[i + 1]])
                i += 2
                continue
            for n in range(min(longest, len(words) - i), 0, -1):
                cand = " ".join(words[i:i + n])
                if cand in phrases:
                    out.append(phrases[cand])
                    i += n
                    break
            else:
                i += 1
        if out:
            parts.append("".join(out))
    return "、".join(dict.fromkeys(parts))


def base_colors(color: str, glossary: dict | None = None) -> set[str]:
    """Plain colours named anywhere in an IKEA colour text ("Black-brown" -> {black, brown})."""
    g = glossary or _glossary("colors")
    base = set(g["base"])
    found = set()
    for words in _color_words(color):
        for w in words:
            for piece in [w, *w.split("-")]:
                if piece in base:
                    found.add(piece)
    return found


# --------------------------------------------------------------------------- IKEA
def read_ikea(data_dir: Path) -> list[dict]:
    path = _need(Path(data_dir) / "ikea" / "products.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ikea_related(data_dir: Path) -> tuple[dict[str, set], dict[str, list]]:
    """Products that appear together in a room photo, and the room types each appears in."""
    path = Path(data_dir) / "ikea" / "rooms.jsonl"
    related: dict[str, set] = {}
    rooms: dict[str, list] = {}
    if not path.is_file():
        return related, rooms
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        room = json.loads(line)
        ids = room.get("products", [])
        for pid in ids:
            related.setdefault(pid, set()).update(x for x in ids if x != pid)
            rt = room.get("room_type")
            if rt and rt not in rooms.setdefault(pid, []):
                rooms[pid].append(rt)
    return related, rooms


def ikea_records(data_dir: Path = DEFAULT_DATA) -> list[dict]:
    """One catalog record per IKEA product (with or without a photo)."""
    data_dir = Path(data_dir)
    types, colors = _glossary("ikea_types"), _glossary("colors")
    related, rooms = _ikea_related(data_dir)
    out = []
    for p in read_ikea(data_dir):
        zh_type, group = types["types"][p["type"]]
        g = types["groups"][group]
        czh = color_zh(p.get("color", ""), colors)
        color = (p.get("color") or "").strip()
        title_en = f"{p['series']} {p['type']}" + (f", {color}" if color else "")
        title_zh = f"{p['series']} {czh}{zh_type}" if czh else f"{p['series']} {zh_type}"
        rec = {
            "id": p["id"],
            "title": f"{title_zh} / {title_en}",
            "description": p.get("description", ""),
            "brand": "IKEA",
            "category": [g["en"], p["type"]],
            "images": [str((data_dir / "ikea" / p["image"]).resolve())] if p.get("image") else [],
            "attributes": {"title_en": title_en, "title_zh": title_zh, "type": p["type"], "type_zh": zh_type,
                           "color": color, "color_zh": czh, "size": p.get("size", ""),
                           "category_zh": f"{g['zh']} > {zh_type}", "rooms": rooms.get(p["id"], [])},
            "relations": {"series": [p["series"]], "related": sorted(related.get(p["id"], ()))},
        }
        out.append(rec)
    return out


def ikea_split(records: list[dict], test: int = IKEA_TEST, val: int = IKEA_VAL, seed: int = SPLIT_SEED) -> dict:
    """Fixed product split of the IKEA products that have a photo: train / val / test ids."""
    ids = sorted(r["id"] for r in records if r["images"])
    order = np.random.default_rng(seed).permutation(len(ids))
    pick = [ids[i] for i in order]
    return {"seed": seed, "test": sorted(pick[:test]), "val": sorted(pick[test:test + val]),
            "train": sorted(pick[test + val:])}


def ikea_queries(records: list[dict], ids: list[str]) -> dict[str, list[dict]]:
    """Per product: query "type, color" and query = its description; relevant = that product."""
    by_id = {r["id"]: r for r in records}
    tc, desc = [], []
    for pid in ids:
        a = by_id[pid]["attributes"]
        q = a["type"] + (f", {a['color']}" if a["color"] else "")
        tc.append({"query": q, "lang": "en", "relevant": [pid]})
        if by_id[pid]["description"]:
            desc.append({"query": by_id[pid]["description"], "lang": "en", "relevant": [pid]})
    return {"ikea_type_color": tc, "ikea_description": desc}


# --------------------------------------------------------------------------- Grocery
def grocery_classes(data_dir: Path = DEFAULT_DATA) -> list[dict]:
    """classes.csv rows (the file has CRLF line ends) with the description text read in."""
    base = _need(Path(data_dir) / "grocery" / "dataset")
    text = (base / "classes.csv").read_text(encoding="utf-8").replace("\r", "")
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        icon = r["Iconic Image Path (str)"].lstrip("/")
        desc_path = base / r["Product Description Path (str)"].lstrip("/")
        rows.append({"name": r["Class Name (str)"], "id": int(r["Class ID (int)"]),
                     "coarse": r["Coarse Class Name (str)"], "coarse_id": int(r["Coarse Class ID (int)"]),
                     "top": icon.split("/")[1], "iconic": str((base / icon).resolve()),
                     "description": desc_path.read_text(encoding="utf-8", errors="replace").strip()
                     if desc_path.is_file() else ""})
    return rows


def grocery_shelf(data_dir: Path = DEFAULT_DATA, split: str = "test") -> list[dict]:
    """Shelf photos of a split: {"image": abs path, "class_id": fine id, "coarse_id": coarse id}."""
    base = _need(Path(data_dir) / "grocery" / "dataset")
    out = []
    for line in (base / f"{split}.txt").read_text().splitlines():
        if not line.strip():
            continue
        path, fine, coarse = [x.strip() for x in line.split(",")]
        out.append({"image": str((base / path).resolve()), "class_id": int(fine), "coarse_id": int(coarse)})
    return out


def _grocery_brand(name: str, brands: list[str]) -> str:
    spaced = name.replace("-", " ")
    return next((b for b in brands if spaced.startswith(b + " ")), "")


def grocery_records(data_dir: Path = DEFAULT_DATA, shelf_photos: bool = False) -> list[dict]:
    """81 products; with shelf_photos the train-split shelf photos become extra product images."""
    g = _glossary("grocery")
    classes = grocery_classes(data_dir)
    extra: dict[int, list[str]] = {}
    if shelf_photos:
        for s in grocery_shelf(data_dir, "train"):
            extra.setdefault(s["class_id"], []).append(s["image"])
    out = []
    for c in classes:
        names = g["classes"][c["name"]]
        coarse_en = c["coarse"].replace("-", " ")
        coarse_zh = g["coarse"][c["coarse"]]
        top_zh = g["top"][c["top"]]
        brand = _grocery_brand(c["name"], g["brands"]) if c["top"] == "Packages" else ""
        out.append({
            "id": c["name"],
            "title": f"{names['zh']} / {names['en']}",
            "description": c["description"],
            "brand": brand,
            "category": [c["top"], coarse_en, names["en"]],
            "images": [c["iconic"], *extra.get(c["id"], [])],
            "attributes": {"title_en": names["en"], "title_zh": names["zh"],
                           "category_zh": f"{top_zh} > {coarse_zh} > {names['zh']}",
                           "class_id": c["id"], "coarse_id": c["coarse_id"]},
        })
    return out


def grocery_text_queries(data_dir: Path = DEFAULT_DATA) -> list[dict]:
    out = []
    for c in grocery_classes(data_dir):
        out.append({"query": c["name"].replace("-", " "), "kind": "class_name", "lang": "en", "relevant": [c["name"]]})
        if c["description"]:
            out.append({"query": c["description"], "kind": "description", "lang": "en", "relevant": [c["name"]]})
    return out


# --------------------------------------------------------------------------- Chinese queries
# IKEA: (query, regex on the English type, base colours or None). Grocery: (query, product names).
ZH_IKEA = [
    ("椅子", r"\bchair\b", None), ("白色椅子", r"\bchair\b", {"white"}), ("黑色椅子", r"\bchair\b", {"black"}),
    ("扶手椅", r"armchair|chair with armrests", None), ("沙发", r"\bsofa", None), ("凳子", r"\bstool\b", None),
    ("桌子", r"\btable\b|\bdesk\b", None), ("白色桌子", r"\btable\b|\bdesk\b", {"white"}), ("书桌", r"\bdesk\b", None),
    ("地毯", r"^rug\b", None), ("靠垫套", r"cushion cover", None), ("被套", r"quilt cover", None),
    ("窗帘", r"curtain", None), ("浴巾", r"bath towel|bath sheet|hand towel|washcloth", None),
    ("灯", r"\blamp\b|light|spotlight|chandelier", None), ("吊灯", r"pendant", None), ("台灯", r"table lamp|work lamp", None),
    ("衣柜", r"wardrobe", None), ("柜子", r"cabinet|wardrobe|chest of|sideboard|bookcase", None),
    ("白色柜子", r"cabinet|wardrobe|chest of|sideboard|bookcase", {"white"}), ("抽屉柜", r"chest of|drawer unit", None),
    ("置物架", r"shelf|shelving|bookcase", None), ("收纳盒", r"^box|storage box|basket", None),
    ("镜子", r"mirror", None), ("相框", r"^frame", None), ("花瓶", r"^vase", None), ("花盆", r"plant pot|planter", None),
    ("碗", r"bowl", None), ("毛绒玩具", r"soft toy", None), ("柜门", r"^door$|glass door", None),
    ("床", r"\bbed\b|\bbed frame|\bcot\b", None),
]
ZH_GROCERY = [
    ("燕麦奶", ["Oatly-Oat-Milk"]), ("燕麦酸奶", ["Oatly-Natural-Oatghurt"]),
    ("豆奶", ["Alpro-Fresh-Soy-Milk", "Alpro-Shelf-Soy-Milk"]),
    ("牛奶", ["Arla-Ecological-Medium-Fat-Milk", "Arla-Lactose-Medium-Fat-Milk", "Arla-Medium-Fat-Milk",
            "Arla-Standard-Milk", "Garant-Ecological-Medium-Fat-Milk", "Garant-Ecological-Standard-Milk"]),
    ("酸奶", ["Arla-Mild-Vanilla-Yoghurt", "Arla-Natural-Mild-Low-Fat-Yoghurt", "Arla-Natural-Yoghurt",
            "Valio-Vanilla-Yoghurt", "Yoggi-Strawberry-Yoghurt", "Yoggi-Vanilla-Yoghurt",
            "Alpro-Blueberry-Soyghurt", "Alpro-Vanilla-Soyghurt", "Oatly-Natural-Oatghurt"]),
    ("香草酸奶", ["Arla-Mild-Vanilla-Yoghurt", "Valio-Vanilla-Yoghurt", "Yoggi-Vanilla-Yoghurt", "Alpro-Vanilla-Soyghurt"]),
    ("酸奶油", ["Arla-Ecological-Sour-Cream", "Arla-Sour-Cream"]),
    ("橙汁", ["Bravo-Orange-Juice", "God-Morgon-Orange-Juice", "Tropicana-Juice-Smooth"]),
    ("苹果汁", ["Bravo-Apple-Juice", "God-Morgon-Apple-Juice", "Tropicana-Apple-Juice"]),
    ("苹果", ["Golden-Delicious", "Granny-Smith", "Pink-Lady", "Red-Delicious", "Royal-Gala"]),
    ("青苹果", ["Granny-Smith"]), ("香蕉", ["Banana"]), ("柠檬", ["Lemon"]), ("青柠", ["Lime"]),
    ("牛油果", ["Avocado"]), ("猕猴桃", ["Kiwi"]), ("芒果", ["Mango"]), ("西瓜", ["Watermelon"]),
    ("甜瓜", ["Cantaloupe", "Galia-Melon", "Honeydew-Melon"]), ("梨", ["Anjou", "Conference", "Kaiser"]),
    ("菠萝", ["Pineapple"]), ("石榴", ["Pomegranate"]), ("橙子", ["Orange"]),
    ("番茄", ["Beef-Tomato", "Regular-Tomato", "Vine-Tomato"]),
    ("土豆", ["Floury-Potato", "Solid-Potato"]), ("红薯", ["Sweet-Potato"]), ("黄瓜", ["Cucumber"]),
    ("茄子", ["Aubergine"]), ("胡萝卜", ["Carrots"]), ("洋葱", ["Yellow-Onion"]), ("大蒜", ["Garlic"]),
    ("生姜", ["Ginger"]), ("蘑菇", ["Brown-Cap-Mushroom"]),
    ("甜椒", ["Green-Bell-Pepper", "Orange-Bell-Pepper", "Red-Bell-Pepper", "Yellow-Bell-Pepper"]),
    ("红甜椒", ["Red-Bell-Pepper"]), ("卷心菜", ["Cabbage"]), ("西葫芦", ["Zucchini"]),
]


def zh_queries(ikea: list[dict], ikea_pool: list[str], min_relevant: int = 4) -> list[dict]:
    """Chinese queries with relevant product ids. IKEA relevance is judged on the English type
    (regex) and colour (base colour words), within the given pool of product ids; IKEA queries
    with fewer than min_relevant products in the pool are left out (too few to measure)."""
    colors = _glossary("colors")
    by_id = {r["id"]: r for r in ikea}
    out = []
    for q, pattern, want in ZH_IKEA:
        rx = re.compile(pattern, re.I)
        rel = [pid for pid in ikea_pool
               if rx.search(by_id[pid]["attributes"]["type"])
               and (want is None or want & base_colors(by_id[pid]["attributes"]["color"], colors))]
        if len(rel) >= min_relevant:
            out.append({"query": q, "lang": "zh", "catalog": "ikea", "relevant": sorted(rel)})
    for q, names in ZH_GROCERY:
        out.append({"query": q, "lang": "zh", "catalog": "grocery", "relevant": list(names)})
    return out


# --------------------------------------------------------------------------- writing
def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_all(out_dir: Path, data_dir: Path = DEFAULT_DATA) -> dict[str, Path]:
    """Write every catalog and query set; returns {name: path}."""
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    _need(data_dir)
    written: dict[str, Path] = {}
    ikea = ikea_records(data_dir)
    split = ikea_split(ikea)
    written["ikea"] = _write_jsonl(out_dir / "ikea.jsonl", ikea)
    (out_dir / "ikea_split.json").write_text(json.dumps(split, indent=1), encoding="utf-8")
    written["ikea_split"] = out_dir / "ikea_split.json"
    for name, rows in ikea_queries(ikea, split["test"]).items():
        written[name] = _write_jsonl(out_dir / "queries" / f"{name}.jsonl", rows)
    written["grocery"] = _write_jsonl(out_dir / "grocery.jsonl", grocery_records(data_dir))
    written["grocery_with_shelf"] = _write_jsonl(out_dir / "grocery_with_shelf.jsonl",
                                                 grocery_records(data_dir, shelf_photos=True))
    names = {c["id"]: c["name"] for c in grocery_classes(data_dir)}
    for split_name in ("train", "val", "test"):
        rows = [{"image": s["image"], "relevant": [names[s["class_id"]]]} for s in grocery_shelf(data_dir, split_name)]
        written[f"grocery_shelf_{split_name}"] = _write_jsonl(out_dir / "queries" / f"grocery_shelf_{split_name}.jsonl", rows)
    written["grocery_text"] = _write_jsonl(out_dir / "queries" / "grocery_text.jsonl", grocery_text_queries(data_dir))
    written["zh"] = _write_jsonl(out_dir / "queries" / "zh.jsonl", zh_queries(ikea, split["test"]))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder to write the catalogs into (outside the repo)")
    ap.add_argument("--data", type=Path, default=None, help=f"shared data folder (default: $CMSEARCH_SHARED_DATA or {DEFAULT_DATA})")
    args = ap.parse_args(argv)
    import os
    data = args.data or Path(os.environ.get("CMSEARCH_SHARED_DATA") or DEFAULT_DATA)
    try:
        written = write_all(args.out, data)
    except DataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    for name, path in written.items():
        n = sum(1 for _ in path.open(encoding="utf-8")) if path.suffix == ".jsonl" else ""
        print(f"{name:<22} {path}  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
