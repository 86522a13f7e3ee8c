"""What a product's ``suggest`` field holds: the inputs a search-as-you-type prefix completes.

Ingest writes these entries and the query side reads them (:mod:`query_builder.suggest`), so
both live down here, beside the normalizer and the pinyin they are made of.  One document holds
three kinds of entries, told apart by the field's ``kind`` context:

- ``title``: the product's title from each of its first words on (so ``连衣裙`` finds
  ``莲花 深色连衣裙``), in Chinese, in full pinyin and in pinyin initials;
- ``brand`` and ``category`` (the leaf name), in the same three forms.

Every input is a *key*: the shared normal form (:func:`analysis.normalize_text`) with spaces and
punctuation removed, so ``lian yi qun``, ``lianyiqun`` and ``LianYiQun`` are the same prefix.
Pinyin is the one ingest writes into the pinyin fields (:func:`analysis.pinyin.syllables`,
phrase-aware), Latin words kept whole in the initials form (``iphone15sj``): a shopper types a
brand whole and the Chinese after it by initials.

Ranking is by the entry's weight, ``popularity * WEIGHT_STEP + match``: popularity first (clicks
on the product, from the events index, see :mod:`evaluation.popularity`), then how the prefix
matched (a title's first word over a later one).
"""
from __future__ import annotations

from typing import Any, Sequence

from mappings import fields

from .normalize import has_cjk, normalize_text
from .pinyin import PINYIN_VERSION, syllables

__all__ = ["KINDS", "TITLE", "BRAND", "CATEGORY", "WEIGHT_STEP", "MAX_POPULARITY", "MAX_PREFIX_CHARS",
           "suggestion_key", "pinyin_forms", "suggest_entries", "suggest_identity"]

TITLE, BRAND, CATEGORY = fields.TITLE, fields.BRAND, "category"   # a kind is named for what it suggests
KINDS = (TITLE, BRAND, CATEGORY)
WEIGHT_STEP = 8                 # weight = popularity * WEIGHT_STEP + match bonus (< WEIGHT_STEP)
MAX_POPULARITY = (2**31 - 1) // WEIGHT_STEP - 1
MAX_KEY_CHARS = 50              # the mapping's max_input_length: a prefix needs no more
MAX_TITLE_STARTS = 6            # title suffixes indexed, from each of its first words
MAX_PREFIX_CHARS = 50
SUGGEST_VERSION = 2             # 2: the shared pinyin (analysis.pinyin) instead of a converter of its own
_MATCH_BONUS = {TITLE: 3, BRAND: 2, CATEGORY: 2}   # the title's first word; later words get 1


def suggestion_key(text: str | None) -> str:
    """The normal form, letters and digits only (no spaces, no punctuation), lower case."""
    return "".join(ch for ch in normalize_text(text) if ch.isalnum())[:MAX_KEY_CHARS]


def suggest_identity() -> str:
    """What decides the suggestion inputs (ingest puts it into the content hash)."""
    return f"suggest-{SUGGEST_VERSION}/pinyin-{PINYIN_VERSION}"


def pinyin_forms(text: str) -> tuple[str, ...]:
    """Full pinyin and initials keys of ``text`` (nothing when it has no Chinese)."""
    if not has_cjk(text):
        return ()
    pieces = syllables(text)
    full = "".join(p for p, _ in pieces)
    initials = "".join(p[0] if han else p for p, han in pieces)
    return tuple(dict.fromkeys(k for k in (suggestion_key(full), suggestion_key(initials)) if k))


def _forms(text: str) -> list[str]:
    key = suggestion_key(text)
    return list(dict.fromkeys(k for k in (key, *pinyin_forms(text)) if k)) if key else []


def _entry(inputs: Sequence[str], kind: str, popularity: int, bonus: int) -> dict[str, Any]:
    return {"input": list(dict.fromkeys(inputs)), "weight": popularity * WEIGHT_STEP + bonus,
            "contexts": {fields.SUGGEST_CONTEXT: [kind]}}


def suggest_entries(title_words: Sequence[str], brand_spellings: Sequence[str] = (),
                    category_leaf: str | None = None, popularity: int = 0) -> list[dict[str, Any]]:
    """The ``suggest`` field's value for one product.

    ``title_words``: the title's words as the tokenizer splits them (an entry from each of the
    first :data:`MAX_TITLE_STARTS`); ``brand_spellings``: the brand as written and its aliases;
    ``category_leaf``: the leaf category name.
    """
    popularity = max(0, min(int(popularity), MAX_POPULARITY))
    words = [w for w in title_words if suggestion_key(w)]
    out: list[dict[str, Any]] = []
    if words:
        out.append(_entry(_forms("".join(words)), TITLE, popularity, _MATCH_BONUS[TITLE]))
        later = [f for i in range(1, min(len(words), MAX_TITLE_STARTS)) for f in _forms("".join(words[i:]))]
        if later:
            out.append(_entry(later, TITLE, popularity, 1))
    brand = [f for s in brand_spellings for f in _forms(s)]
    if brand:
        out.append(_entry(brand, BRAND, popularity, _MATCH_BONUS[BRAND]))
    if category_leaf:
        cat = _forms(category_leaf)
        if cat:
            out.append(_entry(cat, CATEGORY, popularity, _MATCH_BONUS[CATEGORY]))
    return out
