"""A bilingual demo catalog from Debian's `dataset-fashion-mnist` (real Zalando product photos).

Fashion-MNIST has 70,000 28x28 grayscale photos in 10 classes and nothing else, so the catalog
adds what a shop has: a category tree (服装/鞋/包 over the ten classes), Chinese and English
titles, fictional brands, a shade read from the photo itself (深色/浅色, dark/light), prices and
relations (bags are accessories of clothing).  Titles only say what the photo shows, so text and
photo searches can be judged against the class labels.  Everything is deterministic for a seed.
"""
from __future__ import annotations

import gzip
import json
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"


@dataclass(frozen=True)
class FashionClass:
    label: int
    en: str
    zh: str
    path: tuple[str, ...]  # category path, Chinese, top first


CLASSES = (
    FashionClass(0, "T-shirt", "T恤", ("服装", "上装", "T恤")),
    FashionClass(1, "trousers", "裤子", ("服装", "下装", "裤子")),
    FashionClass(2, "pullover", "套头衫", ("服装", "上装", "套头衫")),
    FashionClass(3, "dress", "连衣裙", ("服装", "裙装", "连衣裙")),
    FashionClass(4, "coat", "外套", ("服装", "上装", "外套")),
    FashionClass(5, "sandals", "凉鞋", ("鞋", "凉鞋")),
    FashionClass(6, "shirt", "衬衫", ("服装", "上装", "衬衫")),
    FashionClass(7, "sneakers", "运动鞋", ("鞋", "运动鞋")),
    FashionClass(8, "bag", "包", ("包", "手提包")),
    FashionClass(9, "ankle boots", "短靴", ("鞋", "短靴")),
)

# Fictional brands: (canonical, Chinese name, English name); each sells a few kinds of goods.
BRANDS = (
    ("northwind", "北风", "Northwind", (0, 1, 2, 4, 6)),
    ("lotus", "莲花", "Lotus", (0, 3, 6, 8)),
    ("summit", "峰顶", "Summit", (4, 5, 7, 9)),
    ("river", "江河", "River", (1, 2, 3, 8)),
    ("swift", "飞燕", "Swift", (5, 7, 9)),
    ("pearl", "珍珠", "Pearl", (3, 8, 0)),
)
SHADES = {"dark": ("深色", "dark"), "light": ("浅色", "light")}


class DatasetMissing(RuntimeError):
    """The Debian data set is not installed."""


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    raise ValueError(f"{path}: not an IDX file (magic {magic})")


def load_split(split: str = "train", dataset_dir: Path = DATASET_DIR) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    img, lab = dataset_dir / f"{prefix}-images-idx3-ubyte.gz", dataset_dir / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise DatasetMissing(f"Fashion-MNIST not found in {dataset_dir}; install it with "
                             f"`apt-get install {DEBIAN_PACKAGE}`")
    return _read_idx(img), _read_idx(lab)


def _shade(pixels: np.ndarray) -> str:
    """Dark or light garment, from its non-background pixels.

    Fashion-MNIST stores photos inverted (garment bright on black), so a high value is a dark garment.
    """
    fg = pixels[pixels > 20]
    return "dark" if fg.size and fg.mean() > 140 else "light"


def _save_photo(pixels: np.ndarray, path: Path) -> None:
    # Product photos are dark-on-light in a shop: invert, and upscale so the encoder sees detail.
    Image.fromarray(255 - pixels, mode="L").resize((112, 112), Image.BICUBIC).save(path)


def build_catalog(out_dir: Path, per_class: int = 200, queries_per_class: int = 5, seed: int = 7) -> dict:
    """Write ``catalog.jsonl``, ``images/`` and ``queries.jsonl`` (photo queries from the test split)."""
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")

    catalog, n = out_dir / "catalog.jsonl", 0
    with catalog.open("w", encoding="utf-8") as out:
        for cls in CLASSES:
            idx = np.flatnonzero(train_y == cls.label)[:per_class]
            sellers = [b for b in BRANDS if cls.label in b[3]]
            for j, i in enumerate(idx):
                brand = sellers[j % len(sellers)]
                shade = _shade(train_x[i])
                zh_shade, en_shade = SHADES[shade]
                pid = f"fm-{cls.label}-{j:04d}"
                photo = images_dir / f"{pid}.png"
                _save_photo(train_x[i], photo)
                record = {
                    "id": pid,
                    "title": f"{brand[1]} {zh_shade}{cls.zh} {brand[2]} {en_shade} {cls.en}",
                    "description": f"{zh_shade}{cls.zh}，{brand[1]}出品。A {en_shade} {cls.en} by {brand[2]}.",
                    "brand": brand[0],
                    "category": list(cls.path),
                    "images": [f"images/{pid}.png"],
                    "price": round(rng.uniform(39, 899), 2),
                    "rating": round(rng.uniform(3.0, 5.0), 1),
                    "attributes": {"shade": shade},
                    "relations": {"series": f"{brand[0]}-{cls.path[0]}",
                                  "accessory_of": ["服装"] if cls.label == 8 else []},
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1

    queries = out_dir / "queries.jsonl"
    with queries.open("w", encoding="utf-8") as out:
        for cls in CLASSES:
            for j, i in enumerate(np.flatnonzero(test_y == cls.label)[:queries_per_class]):
                qid = f"photo-{cls.label}-{j}"
                _save_photo(test_x[i], images_dir / f"{qid}.png")
                out.write(json.dumps({"id": qid, "image": f"images/{qid}.png", "label": cls.label,
                                      "category": list(cls.path)}, ensure_ascii=False) + "\n")
    aliases = out_dir / "aliases.json"
    aliases.write_text(json.dumps({"brands": {b[0]: [b[1], b[2]] for b in BRANDS}},
                                  ensure_ascii=False, indent=2), encoding="utf-8")
    return {"catalog": catalog, "queries": queries, "aliases": aliases, "products": n}
