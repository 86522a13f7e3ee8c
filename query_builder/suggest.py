"""Search-as-you-type suggestions: what the ``suggest`` field holds, and the request that reads it.

The field is a completion suggester (an in-memory FST per segment, not a query over an
inverted index), chosen over edge-ngram prefix fields because a suggestion is then a lookup
that costs the same however many products share a prefix, ranks by a stored weight with no
scoring, and de-duplicates equal suggestions (``skip_duplicates``) in the engine.  One document
holds three kinds of entries, told apart by the field's ``kind`` context (one suggester per
kind in one request):

- ``title``: the product's title from each of its first words on (so ``连衣裙`` finds
  ``莲花 深色连衣裙``), in Chinese, in full pinyin and in pinyin initials;
- ``brand`` and ``category`` (the leaf name), in the same three forms.

Every input is a *key*: the shared normal form (:func:`analysis.normalize_text`) with spaces and
punctuation removed, so ``lian yi qun``, ``lianyiqun`` and ``LianYiQun`` are the same prefix.

Ranking is by the entry's weight, ``popularity * WEIGHT_STEP + match``: popularity first (clicks
on the product, from the events index, see :mod:`evaluation.popularity`), then how the prefix
matched (a title's first word over a later one).

Pinyin comes from ``pypinyin`` when it is importable; without it only the Chinese and Latin
forms are indexed.  :func:`set_pinyin` points this at another converter (the shared one in
:mod:`analysis`, once there is one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from analysis import normalize_text
from mappings import fields

__all__ = ["KINDS", "TITLE", "BRAND", "CATEGORY", "WEIGHT_STEP", "Suggestion", "suggestion_key", "pinyin_forms",
           "set_pinyin", "suggest_entries", "suggest_body", "parse_suggestions", "suggest_identity",
           "MAX_PREFIX_CHARS"]

TITLE, BRAND, CATEGORY = fields.TITLE, fields.BRAND, "category"   # a kind is named for what it suggests
KINDS = (TITLE, BRAND, CATEGORY)
WEIGHT_STEP = 8                 # weight = popularity * WEIGHT_STEP + match bonus (< WEIGHT_STEP)
MAX_POPULARITY = (2**31 - 1) // WEIGHT_STEP - 1
MAX_KEY_CHARS = 50              # the mapping's max_input_length: a prefix needs no more
MAX_TITLE_STARTS = 6            # title suffixes indexed, from each of its first words
MAX_PREFIX_CHARS = 50
_MATCH_BONUS = {TITLE: 3, BRAND: 2, CATEGORY: 2}   # the title's first word; later words get 1


def suggestion_key(text: str | None) -> str:
    """The normal form, letters and digits only (no spaces, no punctuation), lower case."""
    return "".join(ch for ch in normalize_text(text) if ch.isalnum())[:MAX_KEY_CHARS]


def _pypinyin() -> Callable[[str], tuple[str, str]] | None:
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        return None

    def convert(text: str) -> tuple[str, str]:
        return "".join(lazy_pinyin(text)), "".join(lazy_pinyin(text, style=Style.FIRST_LETTER))
    return convert


_PINYIN = _pypinyin()
_PINYIN_NAME = "pypinyin" if _PINYIN is not None else "none"


def set_pinyin(convert: Callable[[str], tuple[str, str]] | None, name: str = "custom") -> None:
    """Use ``convert(text) -> (full pinyin, initials)`` for suggestion inputs (None: no pinyin).

    The name enters :func:`suggest_identity`, so the next load re-writes products indexed otherwise.
    """
    global _PINYIN, _PINYIN_NAME
    _PINYIN, _PINYIN_NAME = convert, (name if convert is not None else "none")


def suggest_identity() -> str:
    """What decides the suggestion inputs (ingest puts it into the content hash)."""
    return f"suggest-1/{_PINYIN_NAME}"


def _has_han(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def pinyin_forms(text: str) -> tuple[str, ...]:
    """Full pinyin and initials keys of ``text`` (nothing when it has no Chinese or no converter)."""
    if _PINYIN is None or not _has_han(text):
        return ()
    full, initials = _PINYIN(normalize_text(text))
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


@dataclass(frozen=True)
class Suggestion:
    text: str               # what to show: a title, a brand, a category name
    kind: str               # title, brand or category
    score: float            # the entry's weight (popularity, then match)
    product_id: str = ""    # the product a title suggestion comes from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SOURCE = (fields.ID, fields.TITLE_RAW, fields.BRAND, fields.CATEGORY_LEAF)


def suggest_body(prefix: str, size: int = 10, kinds: Sequence[str] = KINDS) -> dict[str, Any] | None:
    """One request with a completion suggester per kind; None when the prefix has no letters or digits."""
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
        raise ValueError(f"suggestion size must be an integer from 1 to 100, got {size!r}")
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"suggestion kinds {list(kinds)}; allowed: a non-empty subset of {list(KINDS)}")
    key = suggestion_key((prefix or "")[:MAX_PREFIX_CHARS * 4])
    if not key:
        return None
    suggest = {kind: {"prefix": key, "completion": {
        "field": fields.SUGGEST, "size": size, "skip_duplicates": True,
        "contexts": {fields.SUGGEST_CONTEXT: [kind]}}} for kind in kinds}
    return {"_source": list(_SOURCE), "suggest": suggest}


def _display(kind: str, src: Mapping[str, Any]) -> str:
    if kind == TITLE:
        return str(src.get(fields.TITLE_RAW) or "")
    if kind == BRAND:
        return str(src.get(fields.BRAND) or "")
    leaf = str(src.get(fields.CATEGORY_LEAF) or "")
    return leaf.rsplit(fields.SEP, 1)[-1].strip()


def parse_suggestions(resp: Mapping[str, Any], size: int = 10) -> list[Suggestion]:
    """The suggesters' options merged: by weight, then kind (title, brand, category); one per text and kind."""
    found: dict[tuple[str, str], Suggestion] = {}
    for order, kind in enumerate(KINDS):
        for entry in (resp.get("suggest") or {}).get(kind) or ():
            for opt in entry.get("options") or ():
                src = opt.get("_source") or {}
                text = _display(kind, src)
                if not text or (kind, text.casefold()) in found:
                    continue
                found[(kind, text.casefold())] = Suggestion(
                    text, kind, float(opt.get("_score") or 0.0),
                    str(src.get(fields.ID) or opt.get("_id") or "") if kind == TITLE else "")
    rank = {k: i for i, k in enumerate(KINDS)}
    return sorted(found.values(), key=lambda s: (-s.score, rank[s.kind]))[:size]
