"""The Chinese query set over Product1M-zh: what shoppers type instead of the listing's own words.

Every query starts from an instance label of ``../shared/data/product1m-zh/dev.jsonl`` (``兰蔻
小黑瓶眼霜``); its relevant listings are the listings of that instance, as in
``product1m_instance`` (bench/make_judgments.py).  Kinds, each a judgment set of its own:

- ``traditional``: the label in traditional characters (OpenCC ``s2t``), where that changes it;
- ``pinyin``: every Chinese run as toneless pinyin without spaces (``lankou xiaoheipingyanshuang``);
- ``pinyin_spaced``: the same, one syllable per word (``lan kou xiao hei ping yan shuang``);
- ``initials``: every Chinese run as its syllables' first letters (``lk xhpys``);
- ``typo``: one Chinese character of the product name replaced by another character of the
  same toneless reading that occurs in the catalog (a phone keyboard's wrong candidate);
- ``latin_brand``: a Chinese brand name replaced by its Latin name (``lancome 小黑瓶眼霜``);
- ``synonym``: a word of the product name replaced by a synonym from ``bench/zh_synonyms.txt``.

Labels are split by a hash of the label into ``val`` (settings are chosen on these) and ``test``
(reported).  ``nonsense.jsonl`` holds queries nothing should match (random letters, things a
cosmetics catalog does not sell), for :mod:`bench.zh_nonsense` checks.  Seeded: the same data
gives the same sets.

Usage: ``python bench/make_zh_queries.py --out W/zh_queries [--data ../shared/data] [--seed 13]``
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from analysis.normalize import is_cjk  # noqa: E402
from analysis.pinyin import syllables  # noqa: E402
from analysis.synonyms import SynonymTable  # noqa: E402
from evaluation.judgments import JudgedQuery, JudgmentSet, query_id_for, write_trec  # noqa: E402

SYNONYMS = Path(__file__).with_name("zh_synonyms.txt")
KINDS = ("traditional", "pinyin", "pinyin_spaced", "initials", "typo", "latin_brand", "synonym")
# the Latin names these brands go by (their own romanizations / international names)
LATIN_BRANDS = {"兰蔻": "lancome", "雅诗兰黛": "estee lauder", "娇韵诗": "clarins", "肌肤之钥": "cle de peau",
                "黛珂": "decorte", "碧欧泉": "biotherm", "欧缇丽": "caudalie", "自然堂": "chando",
                "御泥坊": "yunifang", "倩碧": "clinique", "迪奥": "dior", "芙丽芳丝": "freeplus",
                "百雀羚": "pechoin", "珂润": "curel", "资生堂": "shiseido", "玉兰油": "olay", "佰草集": "herborist",
                "雅芳": "avon"}
OUT_OF_CATALOG = ["笔记本电脑", "自行车", "电冰箱", "篮球鞋", "机械键盘", "洗衣机", "钓鱼竿", "婴儿推车",
                  "汽车轮胎", "电动牙刷头"]
_HAN_RUN = re.compile(r"[\u3400-\u9fff]+")


def split_of(label: str) -> str:
    return "val" if int(hashlib.sha1(label.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "test"


def read_rows(data: Path) -> list[dict]:
    path = data / "product1m-zh" / "dev.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found (the shared data folder; pass --data)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pinyin_run(run: str, sep: str) -> str:
    return sep.join(p for p, _ in syllables(run))


def _product_part(label: str) -> tuple[str, str]:
    """(brand, product) of a label ``brand product``."""
    brand, _, product = label.partition(" ")
    return (brand, product) if product else ("", label)


class Maker:
    def __init__(self, rows: list[dict], seed: int) -> None:
        from opencc import OpenCC
        from pypinyin.pinyin_dict import pinyin_dict
        from pypinyin.contrib.tone_convert import to_normal

        self.rng = random.Random(seed)
        self.s2t = OpenCC("s2t")
        in_catalog = {ch for r in rows for ch in r["title"] if is_cjk(ch)}
        self.by_sound: dict[str, list[str]] = defaultdict(list)
        self.sound: dict[str, str] = {}
        for cp, readings in pinyin_dict.items():
            ch = chr(cp)
            if ch in in_catalog:
                s = to_normal(readings.split(",")[0]).replace("ü", "v")
                self.sound[ch] = s
                self.by_sound[s].append(ch)
        for v in self.by_sound.values():
            v.sort()
        self.synonyms = SynonymTable.load(SYNONYMS)
        self.syn_words = {s: [t for t in r.sources if t != s] for r in self.synonyms.rules for s in r.sources}

    def traditional(self, label: str) -> str | None:
        t = self.s2t.convert(label)
        return t if t != label else None

    def pinyin(self, label: str, sep: str = "") -> str | None:
        if not _HAN_RUN.search(label):
            return None
        return _HAN_RUN.sub(lambda m: " " + _pinyin_run(m.group(0), sep) + " ", label.lower()).strip().replace("  ", " ")

    def initials(self, label: str) -> str | None:
        if not _HAN_RUN.search(label):
            return None
        out = _HAN_RUN.sub(lambda m: " " + "".join(p[0] for p, _ in syllables(m.group(0))) + " ", label.lower())
        return " ".join(out.split())

    def typo(self, label: str) -> str | None:
        brand, product = _product_part(label)
        spots = [i for i, ch in enumerate(product) if is_cjk(ch) and len(self.by_sound.get(self.sound.get(ch, ""), ())) > 1]
        if not spots:
            return None
        i = self.rng.choice(spots)
        ch = product[i]
        other = self.rng.choice([c for c in self.by_sound[self.sound[ch]] if c != ch])
        product = product[:i] + other + product[i + 1:]
        return f"{brand} {product}".strip()

    def latin_brand(self, label: str) -> str | None:
        brand, product = _product_part(label)
        return f"{LATIN_BRANDS[brand]} {product}" if brand in LATIN_BRANDS else None

    def synonym(self, label: str) -> str | None:
        brand, product = _product_part(label)
        found = [(w, alts) for w, alts in self.syn_words.items() if w in product and alts]
        if not found:
            return None
        word, alts = max(found, key=lambda wa: (len(wa[0]), wa[0]))
        return f"{brand} {product.replace(word, self.rng.choice(sorted(alts)), 1)}".strip()

    def nonsense(self, n: int = 20) -> list[str]:
        letters = "abcdefghijklmnopqrstuvwxyz"
        out = ["".join(self.rng.choice(letters) for _ in range(self.rng.randint(6, 10))) for _ in range(n)]
        return out + OUT_OF_CATALOG


def build(rows: list[dict], seed: int = 13) -> tuple[list[JudgmentSet], list[str]]:
    listings: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for inst in r.get("instances", []):
            if inst.strip():
                listings[inst.strip()].add(str(r["id"]))
    maker = Maker(rows, seed)
    per_set: dict[str, dict[str, JudgedQuery]] = defaultdict(dict)
    for label in sorted(listings):
        grades = {d: 1 for d in sorted(listings[label])}
        for kind in KINDS:
            fn = {"pinyin_spaced": lambda lb: maker.pinyin(lb, " ")}.get(kind) or getattr(maker, kind)
            text = fn(label)
            if not text or text == label:
                continue
            name = f"zh_{kind}_{split_of(label)}"
            qid = query_id_for(text, None)
            old = per_set[name].get(qid)
            merged = {**(dict(old.grades) if old else {}), **grades}
            per_set[name][qid] = JudgedQuery(qid, text, None, merged)
    sets = [JudgmentSet(name, tuple(qs.values())) for name, qs in sorted(per_set.items())]
    return sets, maker.nonsense()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None,
                    help="shared data folder (default: $CMSEARCH_SHARED_DATA or ../shared/data)")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("CMSEARCH_SHARED_DATA") or REPO.parent / "shared" / "data")
    sets, nonsense = build(read_rows(data), args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for js in sets:
        write_trec(js, args.out / js.name)
        manifest[js.name] = {"catalog": "product1m", "queries": len(js), "inputs": ["text"],
                             "judgments": sum(len(q.grades) for q in js)}
        print(f"{js.name}: {len(js)} queries")
    (args.out / "judgments.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    with (args.out / "nonsense.jsonl").open("w", encoding="utf-8") as fh:
        for q in nonsense:
            fh.write(json.dumps({"text": q}, ensure_ascii=False) + "\n")
    print(f"nonsense: {len(nonsense)} queries -> {args.out / 'nonsense.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
