"""Brand and category vocabulary: recognizing mentions in text, normalizing brands.

A query like ``雅诗兰黛 小棕瓶`` or ``estee lauder serum`` names a brand the index
stores as one keyword; ``红色 椅子`` names a category the index stores as a path
``家居>家具>椅子``.  The vocabulary knows both lists (handed in; the searcher and
ingest read them from the index's own facets, so they never drift from the data)
plus the spellings people actually type, from an alias file.

Alias file (JSON, UTF-8)::

    {
      "brands": {
        "sk-ii":        ["sk2", "SK-II", "skii", "神仙水"],
        "estee lauder": ["雅诗兰黛", "Estée Lauder"],
        "ahc":          ["AHC", "爱和纯"]
      },
      "categories": {
        "家居>家具>椅子": ["chair", "chairs", "凳子"],
        "手机":           ["phone", "cellphone"]
      }
    }

- ``brands``: canonical brand -> other spellings.  The canonical form (after
  :func:`normalize_brand`) is what ingest writes into the ``brand`` keyword, so
  the indexed value and a recognized query mention are the same string.
- ``categories``: a category path (levels joined with ``>``) or a bare category
  name -> other names for it.  A bare name stands for every indexed path whose
  last level has that name; a bare name that matches no indexed path is ignored.
- Every spelling is compared after :func:`analysis.normalize.normalize_text`, and
  brands also loosely (spaces, hyphens, dots and apostrophes ignored), so
  ``SK-II``, ``sk ii`` and ``skii`` are one brand.
- Both top-level keys are optional; any other key is an error.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from mappings import fields

from .normalize import fold_key, has_cjk, is_cjk, normalize_text

__all__ = ["AliasTable", "AliasError", "Mention", "Mentions", "Vocabulary", "normalize_brand",
           "category_leaf_name", "category_parent", "category_ancestors", "BRAND_MENTION", "CATEGORY_MENTION"]

# mention kinds; a brand mention is named for the field its values are matched against
BRAND_MENTION = fields.BRAND
CATEGORY_MENTION = "category"

_ASCII_ALNUM = re.compile(r"[a-z0-9]")
_JOINERS = re.compile(r"[\s\-_.'·]+")


# scripts written without spaces between words: a surface needs no word boundary there
_UNSPACED = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF))


def _in_spaced_word(ch: str) -> bool:
    """A letter, digit or mark of a script that separates words with spaces (Latin, Cyrillic,
    Arabic, Hangul ...): a surface must not start or end inside such a word (``lg`` is not in
    ``algorithm``, ``лг`` not in ``алгоритм``)."""
    if not (ch.isalnum() or unicodedata.category(ch)[0] == "M") or is_cjk(ch):
        return False
    cp = ord(ch)
    return not any(lo <= cp <= hi for lo, hi in _UNSPACED)


class AliasError(ValueError):
    """The alias file is not in the documented format."""


def category_leaf_name(path: str) -> str:
    """Last level of a category path (``家居>家具>椅子`` -> ``椅子``)."""
    return path.rsplit(fields.SEP, 1)[-1]


def category_parent(path: str) -> str | None:
    """The path one level up, or None for a top-level category."""
    return path.rsplit(fields.SEP, 1)[0] if fields.SEP in path else None


def category_ancestors(path: str) -> list[str]:
    """Every ancestor path including the path itself, as ingest writes ``category_path``."""
    parts = [p.strip() for p in path.split(fields.SEP) if p.strip()]
    return [fields.SEP.join(parts[: i + 1]) for i in range(len(parts))]


def _normalize_path(path: str) -> str:
    return fields.SEP.join(normalize_text(p) for p in path.split(fields.SEP) if normalize_text(p))


@dataclass(frozen=True, eq=False)
class AliasTable:
    """Parsed alias file: canonical brand / category key -> alternative spellings."""

    brands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "brands", MappingProxyType(dict(self.brands)))
        object.__setattr__(self, "categories", MappingProxyType(dict(self.categories)))
        # loose key of every spelling -> canonical brand
        index: dict[str, str] = {}
        for canon, variants in self.brands.items():
            for v in (canon, *variants):
                k = fold_key(v)
                if k:
                    index.setdefault(k, canon)
        object.__setattr__(self, "_brand_index", MappingProxyType(index))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AliasTable":
        if not isinstance(data, Mapping):
            raise AliasError("alias file must hold a JSON object with 'brands' and/or 'categories'")
        unknown = set(data) - {"brands", "categories"}
        if unknown:
            raise AliasError(f"alias file has unknown keys {sorted(unknown)}; allowed: ['brands', 'categories']")

        def section(name: str, norm) -> dict[str, tuple[str, ...]]:
            raw = data.get(name, {}) or {}
            if not isinstance(raw, Mapping):
                raise AliasError(f"alias file: '{name}' must be an object of name -> list of spellings")
            out: dict[str, tuple[str, ...]] = {}
            for key, variants in raw.items():
                if isinstance(variants, str):
                    variants = [variants]
                if not isinstance(key, str) or not isinstance(variants, (list, tuple)) or \
                        not all(isinstance(v, str) for v in variants):
                    raise AliasError(f"alias file: {name}[{key!r}] must be a list of strings")
                canon = norm(key)
                if not canon:
                    raise AliasError(f"alias file: empty {name} key {key!r}")
                merged = list(out.get(canon, ()))
                for v in variants:
                    nv = normalize_text(v)
                    if nv and nv not in merged:
                        merged.append(nv)
                out[canon] = tuple(merged)
            return out

        return cls(brands=section("brands", lambda k: " ".join(normalize_text(k).split())),
                   categories=section("categories", _normalize_path))

    @classmethod
    def load(cls, path: str | Path) -> "AliasTable":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AliasError(f"alias file {path}: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, dict[str, list[str]]]:
        return {"brands": {k: list(v) for k, v in self.brands.items()},
                "categories": {k: list(v) for k, v in self.categories.items()}}

    def canonical_brand(self, text: str) -> str | None:
        """The canonical brand this spelling belongs to, or None."""
        return self._brand_index.get(fold_key(text))  # type: ignore[attr-defined]


def normalize_brand(text: str | None, aliases: AliasTable | Mapping[str, Iterable[str]] | None = None) -> str:
    """The value written into the ``brand`` keyword, and compared with query mentions.

    A spelling listed in ``aliases`` (an :class:`AliasTable`, or a plain
    ``{canonical: [spellings]}`` mapping) becomes its canonical brand; anything
    else is :func:`normalize_text` with inner whitespace collapsed.  ``""`` for
    no brand.
    """
    if not text:
        return ""
    if aliases is not None:
        table = aliases if isinstance(aliases, AliasTable) else AliasTable.from_dict({"brands": aliases})
        canon = table.canonical_brand(text)
        if canon:
            return canon
    return " ".join(normalize_text(text).split())


@dataclass(frozen=True)
class Mention:
    """One recognized span of the normalized text."""

    kind: str                 # BRAND_MENTION or CATEGORY_MENTION
    surface: str              # the text as it appears (normalized)
    start: int                # offsets into the normalized text
    end: int
    values: tuple[str, ...]   # canonical brands, or category paths


@dataclass(frozen=True)
class Mentions:
    """Brands and category paths named in a text, each once, in order of appearance."""

    brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    spans: tuple[Mention, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.brands or self.categories)

    def merged(self, other: "Mentions") -> "Mentions":
        return Mentions(brands=tuple(dict.fromkeys((*self.brands, *other.brands))),
                        categories=tuple(dict.fromkeys((*self.categories, *other.categories))),
                        spans=(*self.spans, *other.spans))


def _surface_variants(surface: str) -> set[str]:
    """Spellings of a Latin name with joiners swapped: ``estee lauder`` ~ ``esteelauder`` ~ ``estee-lauder``."""
    out = {surface}
    if _JOINERS.search(surface) and _ASCII_ALNUM.search(surface):
        parts = [p for p in _JOINERS.split(surface) if p]
        for j in (" ", "", "-"):
            out.add(j.join(parts))
    return out


def _acceptable(surface: str, *, explicit: bool, kind: str) -> bool:
    """Keep surfaces that are unlikely to fire by accident."""
    if not surface or surface.isdigit():
        return False
    if explicit:
        return True
    if len(surface) >= 2:
        return True
    # one character: only a CJK category name (灯, 床, 伞 are real categories)
    return kind == CATEGORY_MENTION and has_cjk(surface)


class Vocabulary:
    """Known brands and category paths, and every spelling that names them.

    Built from plain lists: the index's own facets are read at the cluster edge
    (:func:`engine.vocabulary.read_vocabulary`), so this module does no I/O.
    Instances are immutable, so a searcher can swap in a re-read one atomically.

    Values (what :meth:`find` returns and the query builder puts in ``term``
    queries) are the strings as indexed; only the surfaces they are recognized
    by are normalized.  A brand also answers to its alias canonical form and all
    its spellings, so an index whose brand field says ``雅诗兰黛`` and one that
    says ``estee lauder`` are both matched by either spelling.
    """

    def __init__(self, brands: Iterable[str] = (), category_paths: Iterable[str] = (),
                 aliases: AliasTable | None = None, terms: Mapping[str, int] | None = None) -> None:
        self.aliases = aliases or AliasTable()
        # the index's words (titles, brands, categories) -> products holding them: what spelling
        # corrections may propose and which Latin words are words rather than pinyin
        self.terms: Mapping[str, int] = MappingProxyType(dict(terms or {}))
        self._speller = None
        brand_set = {b.strip() for b in brands if b and b.strip()}
        brand_set |= set(self.aliases.brands)
        paths: set[str] = set()
        for p in category_paths:
            if p and p.strip():
                paths.update(category_ancestors(p))
        by_norm_path = {_normalize_path(p): p for p in sorted(paths)}
        for key in self.aliases.categories:
            if fields.SEP in key and key not in by_norm_path:
                for anc in category_ancestors(key):
                    by_norm_path.setdefault(_normalize_path(anc), anc)
                    paths.add(by_norm_path[_normalize_path(anc)])
        self.brands: frozenset[str] = frozenset(brand_set)
        self.category_paths: frozenset[str] = frozenset(paths)
        self._path_by_norm = MappingProxyType(by_norm_path)

        # canonical brand -> every indexed spelling of it (for filters and boosts)
        family: dict[str, set[str]] = {}
        for b in brand_set:
            family.setdefault(normalize_brand(b, self.aliases), set()).add(b)
        self._brand_family = {k: frozenset(v) for k, v in family.items()}

        by_leaf: dict[str, set[str]] = {}
        for p in paths:
            by_leaf.setdefault(normalize_text(category_leaf_name(p)), set()).add(p)

        # surface -> {(kind, value)}
        table: dict[str, set[tuple[str, str]]] = {}

        def add(surface: str, kind: str, values: Iterable[str], explicit: bool) -> None:
            for s in _surface_variants(normalize_text(surface)):
                if _acceptable(s, explicit=explicit, kind=kind):
                    table.setdefault(s, set()).update((kind, v) for v in values)

        for canon, members in self._brand_family.items():
            for b in members | {canon}:
                add(b, BRAND_MENTION, members, False)
            for v in self.aliases.brands.get(canon, ()):
                add(v, BRAND_MENTION, members, True)
        for leaf, ps in by_leaf.items():
            add(leaf, CATEGORY_MENTION, ps, False)
        for key, variants in self.aliases.categories.items():
            if key in by_norm_path:
                targets = [by_norm_path[key]]
            else:
                targets = sorted(by_leaf.get(key, ()))
            for v in variants:
                add(v, CATEGORY_MENTION, targets, True)
        self._table = {s: frozenset(v) for s, v in table.items() if v}
        self._lengths = sorted({len(s) for s in self._table}, reverse=True)

    # --- use ---------------------------------------------------------------------------
    def speller(self):
        """Corrections against :attr:`terms` (:class:`analysis.spelling.Speller`, built once)."""
        if self._speller is None:
            from .spelling import Speller

            self._speller = Speller(self.terms)   # a race builds two equal ones; either is kept
        return self._speller

    def latin_words(self) -> frozenset[str]:
        """Latin words the index knows (its words, brand and category spellings): never pinyin."""
        words = getattr(self, "_latin_words", None)
        if words is None:
            words = frozenset(w for w in (*self.terms, *(p for s in self._table for p in s.split(" ")))
                              if w.isascii() and w.isalpha())
            self._latin_words = words
        return words

    def words(self) -> list[str]:
        """Surfaces to keep whole in segmentation (user words for :class:`analysis.Tokenizer`)."""
        return sorted(s for s in self._table if " " not in s and len(s) >= 2)

    def categories_named(self, name: str) -> tuple[str, ...]:
        """Indexed category paths a name (full path, leaf name or alias) stands for.

        A name the vocabulary does not know is returned as given, so a filter on
        a category that has no products yet still means what it says.
        """
        n = _normalize_path(name)
        if n in self._path_by_norm:
            return (self._path_by_norm[n],)
        hits = self._table.get(normalize_text(name), frozenset())
        found = tuple(sorted(v for k, v in hits if k == CATEGORY_MENTION))
        return found or (name.strip(),)

    def brand_values(self, name: str) -> tuple[str, ...]:
        """Every indexed spelling of the brand ``name`` (for filters and boosts).

        Unknown brands give their :func:`normalize_brand` form, the value ingest
        would have written.
        """
        canon = normalize_brand(name, self.aliases)
        return tuple(sorted(self._brand_family.get(canon, frozenset()) | {canon}))

    def find(self, text: str | None) -> Mentions:
        """Brands and categories mentioned in ``text``, longest match first.

        Matching is on the normalized text, so Chinese and English spellings,
        full-width and upper-case forms are all found.  A surface in a script written
        with spaces must sit on word boundaries (``lg`` is not found inside
        ``algorithm``); Chinese and Japanese surfaces need none, since those
        languages are written without spaces.
        """
        norm = normalize_text(text)
        spans: list[Mention] = []
        i, n = 0, len(norm)
        while i < n:
            hit = None
            for length in self._lengths:
                if length > n - i:
                    continue
                s = norm[i:i + length]
                if s in self._table and self._bounded(norm, i, i + length):
                    hit = s
                    break
            if hit is None:
                i += 1
                continue
            by_kind: dict[str, list[str]] = {}
            for kind, value in sorted(self._table[hit]):
                by_kind.setdefault(kind, []).append(value)
            for kind, values in sorted(by_kind.items()):
                spans.append(Mention(kind, hit, i, i + len(hit), tuple(values)))
            i += len(hit)
        brands = tuple(dict.fromkeys(v for m in spans if m.kind == BRAND_MENTION for v in m.values))
        cats = tuple(dict.fromkeys(v for m in spans if m.kind == CATEGORY_MENTION for v in m.values))
        return Mentions(brands=brands, categories=cats, spans=tuple(spans))

    @staticmethod
    def _bounded(text: str, start: int, end: int) -> bool:
        if _in_spaced_word(text[start]) and start > 0 and _in_spaced_word(text[start - 1]):
            return False
        if _in_spaced_word(text[end - 1]) and end < len(text) and _in_spaced_word(text[end]):
            return False
        return True

    def __len__(self) -> int:
        return len(self.brands) + len(self.category_paths)

    def __repr__(self) -> str:
        return (f"Vocabulary(brands={len(self.brands)}, categories={len(self.category_paths)}, "
                f"terms={len(self.terms)})")

