"""From a valid :class:`Product` to the index document's text and facet fields, and its content hash.

Everything here is pure and cheap (no I/O, no models): normalization and segmentation come
from :mod:`analysis`, the same code the query builder uses, so a word indexed here is the word
a query will look for.  Field names come from ``mappings.fields`` only.

The content hash has two halves, ``<vectors>.<text>``:

- the *vectors* half covers what the encoders see (the passage text, the image sources, the
  OCR switch) and the identity of the models, heads and fusion weights;
- the *text* half covers the whole record plus the analysis setup (user dictionary, alias
  file, this module's version).

On a reload, a product whose two halves match is unchanged and skipped; one whose vectors half
matches but whose text half does not (a new brand joined the dictionary, a price changed) gets
a partial update of its text and facet fields without being re-encoded; anything else is
encoded again.  A product indexed with an image left out (it could not be fetched) gets a
vectors half that can never match, so the next load tries that image again.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from analysis import AliasTable, Tokenizer, Vocabulary, category_ancestors, normalize_brand, normalize_text
from analysis.pinyin import PINYIN_VERSION, initials_text, pinyin_text
from analysis.suggestions import suggest_entries, suggest_identity, suggestion_key
from mappings import fields as F
from models.passage import passage_text

from .schema import Product

__all__ = ["Enricher", "ContentHash", "build_vocabulary", "category_value", "TEXT_FIELDS_FOR_UPDATE",
           "group_key", "ENRICH_VERSION"]

ENRICH_VERSION = "enrich-2"   # 2: pinyin, initials and terms fields
INCOMPLETE = "incomplete"
MAX_ATTR_TERM_CHARS = 256      # longer attribute values are stored, not made into filter terms

# every field :meth:`Enricher.fields` may write; a partial update sets the absent ones to null
TEXT_FIELDS_FOR_UPDATE = (
    F.ID, F.TITLE, F.TITLE_RAW, F.DESCRIPTION, F.DESCRIPTION_RAW, F.BRAND, F.BRAND_TEXT,
    F.CATEGORY_PATH, F.CATEGORY_LEAF, *F.CATEGORY_LEVEL_FIELDS, F.CATEGORY_TEXT,
    F.ACCESSORY_OF, F.RELATED, F.SERIES, F.PRICE, F.RATING, F.ATTRIBUTES, F.ATTR_TERMS, F.SUGGEST, F.GROUP,
    F.PINYIN, F.PINYIN_INITIALS, F.TERMS,
)
MAX_TERM_CHARS = 64            # the terms keyword's ignore_above


def group_key(brand: str, title: str) -> str:
    """Near-duplicates share it: the same brand and the same title up to case, width, spaces and punctuation."""
    return f"{normalize_text(brand)}|{suggestion_key(title) or normalize_text(title)}"


def category_value(levels: Sequence[str]) -> str:
    """Levels as the index stores a category path (``家居>家具>椅子``)."""
    return F.SEP.join(levels)


def build_vocabulary(brands: Iterable[str], category_paths: Iterable[str], aliases: AliasTable | None,
                     index_vocabulary: Vocabulary | None = None) -> Vocabulary:
    """The vocabulary whose words the tokenizer keeps whole: this catalog's, plus what the index holds.

    Including the index's own brands and categories makes ingest segment exactly like the
    query builder, which builds its vocabulary from the index.
    """
    b, c = set(brands), set(category_paths)
    if index_vocabulary is not None:
        b |= set(index_vocabulary.brands)
        c |= set(index_vocabulary.category_paths)
    return Vocabulary(brands=sorted(b), category_paths=sorted(c), aliases=aliases)


@dataclass(frozen=True)
class ContentHash:
    vectors: str
    text: str

    def __str__(self) -> str:
        return f"{self.vectors}.{self.text}"

    @classmethod
    def parse(cls, value: Any) -> "ContentHash | None":
        if not isinstance(value, str) or value.count(".") != 1:
            return None
        v, t = value.split(".")
        return cls(v, t)

    def incomplete(self) -> "ContentHash":
        """The hash of a product indexed with images left out: never equal to a complete one."""
        return ContentHash(INCOMPLETE, self.text)


def _digest(obj: Any) -> str:
    data = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def _scalar_text(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)):
        return f"{v:g}" if isinstance(v, float) else str(v)
    if isinstance(v, str):
        s = " ".join(v.split())
        return s or None
    return None


class Enricher:
    """Turns products into documents (text and facets); vectors are added later (documents.py).

    ``vector_identity`` names the encoders, heads, fusion weights and OCR switch (see
    :mod:`.encode`); it goes into the vectors half of the content hash.
    """

    def __init__(self, tokenizer: Tokenizer, aliases: AliasTable | None = None, *,
                 vector_identity: str = "", text_fields: Sequence[str] = ("title", "brand", "category",
                                                                          "description")) -> None:
        self.tokenizer = tokenizer
        self.aliases = aliases
        self.vector_identity = vector_identity
        self.text_fields = tuple(text_fields)
        self.text_identity = _digest({"version": ENRICH_VERSION, "words": list(tokenizer.user_words),
                                      "hmm": tokenizer.hmm, "segmentation": tokenizer.version,
                                      "pinyin": PINYIN_VERSION,
                                      "aliases": aliases.to_dict() if aliases is not None else None,
                                      "suggest": suggest_identity()})

    # -- pieces --------------------------------------------------------------------------
    def brand(self, raw: str) -> str:
        return normalize_brand(raw, self.aliases) if raw else ""

    def brand_spellings(self, raw: str) -> list[str]:
        """The brand as written, its canonical form and the alias spellings (for lexical search)."""
        if not raw:
            return []
        canon = self.brand(raw)
        out = [raw, canon]
        if self.aliases is not None:
            out.extend(self.aliases.brands.get(canon, ()))
        by_norm: dict[str, str] = {}
        for s in out:
            if s and normalize_text(s) not in by_norm:
                by_norm[normalize_text(s)] = s
        return list(by_norm.values())

    def relation_values(self, values: Iterable[str]) -> list[str]:
        """Relation targets as written, plus their brand and category-path forms.

        The query builder's accessory boost matches normalized brands, category paths and
        leaf names, so ``"SK-II"`` is also written as ``sk-ii`` and ``"家居 > 家具"`` as ``家居>家具``.
        """
        out: list[str] = []
        for v in values:
            out.append(v)
            if F.SEP in v:
                levels = [" ".join(x.split()) for x in v.split(F.SEP)]
                if all(levels):
                    out.append(category_value(levels))
            else:
                b = self.brand(v)
                if b:
                    out.append(b)
        return list(dict.fromkeys(out))

    @staticmethod
    def attr_terms(attributes: Mapping[str, Any]) -> list[str]:
        """``key=value`` filter terms for scalar (and list-of-scalar) attributes.

        Written as given and, when different, normalized (case and width folded), so a filter
        typed either way matches.  Long values are stored in ``attributes`` but are not terms.
        """
        out: list[str] = []
        for key, value in attributes.items():
            k = " ".join(str(key).split())
            if not k:
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                s = _scalar_text(item)
                if s is None or len(s) > MAX_ATTR_TERM_CHARS:
                    continue
                out.append(f"{k}={s}")
                nk, ns = normalize_text(k), normalize_text(s)
                if nk and ns:
                    out.append(f"{nk}={ns}")
        return list(dict.fromkeys(out))

    # -- the document --------------------------------------------------------------------
    def fields(self, p: Product) -> dict[str, Any]:
        """Every text and facet field of the product's document (absent values left out)."""
        tk = self.tokenizer
        doc: dict[str, Any] = {F.ID: p.id, F.TITLE: tk.field_text(p.title), F.TITLE_RAW: p.title}
        doc[F.GROUP] = group_key(self.brand(p.brand), p.title)
        doc[F.SUGGEST] = suggest_entries(tk.tokens(p.title), self.brand_spellings(p.brand),
                                         p.category[-1] if p.category else None)
        if p.description:
            doc[F.DESCRIPTION] = tk.field_text(p.description)
            doc[F.DESCRIPTION_RAW] = p.description
        if p.brand:
            doc[F.BRAND] = self.brand(p.brand)
            doc[F.BRAND_TEXT] = tk.field_text(" ".join(self.brand_spellings(p.brand)))
        if p.category:
            path = category_value(p.category)
            doc[F.CATEGORY_PATH] = category_ancestors(path)
            doc[F.CATEGORY_LEAF] = path
            for i, name in enumerate(p.category[: F.CATEGORY_LEVELS]):
                doc[F.category_level(i)] = name
            doc[F.CATEGORY_TEXT] = tk.field_text(" ".join(p.category))
        self._chinese_fields(doc, p)
        if p.accessory_of:
            doc[F.ACCESSORY_OF] = self.relation_values(p.accessory_of)
        if p.related:
            doc[F.RELATED] = list(p.related)
        if p.series:
            doc[F.SERIES] = list(p.series)
        if p.price is not None:
            doc[F.PRICE] = p.price
        if p.rating is not None:
            doc[F.RATING] = p.rating
        if p.attributes:
            doc[F.ATTRIBUTES] = dict(p.attributes)
            terms = self.attr_terms(p.attributes)
            if terms:
                doc[F.ATTR_TERMS] = terms
        return doc

    def _chinese_fields(self, doc: dict[str, Any], p: Product) -> None:
        """Pinyin and initials of the title, brand spellings and category names (one array
        element each), and the distinct words of the same values (the speller's vocabulary)."""
        values = [p.title, *(self.brand_spellings(p.brand) if p.brand else ()), *(p.category or ())]
        full = [t for t in (pinyin_text(v) for v in values) if t]
        initials = [t for t in (initials_text(v) for v in values) if t]
        if full:
            doc[F.PINYIN] = list(dict.fromkeys(full))
        if initials:
            doc[F.PINYIN_INITIALS] = list(dict.fromkeys(initials))
        words = [w for v in values for w in self.tokenizer.tokens(v, for_index=True) if len(w) <= MAX_TERM_CHARS]
        if words:
            doc[F.TERMS] = list(dict.fromkeys(words))

    def update_fields(self, p: Product) -> dict[str, Any]:
        """The partial-update body: every text field, the absent ones set to null."""
        doc = self.fields(p)
        return {name: doc.get(name) for name in TEXT_FIELDS_FOR_UPDATE}

    def passage(self, p: Product) -> str:
        """What the text encoder reads (the space's passage rule, :mod:`models.passage`): the same
        text training pairs are made of, so index text vectors live where the heads expect them."""
        return passage_text(p, self.text_fields)

    def content_hash(self, p: Product, *, ocr: bool = False) -> ContentHash:
        vectors = _digest({"encoders": self.vector_identity, "passage": self.passage(p),
                           "images": list(p.images), "ocr": ocr})
        text = _digest({"analysis": self.text_identity, "record": p.canonical()})
        return ContentHash(vectors, text)
