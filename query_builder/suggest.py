"""Search-as-you-type suggestions: the request that reads the ``suggest`` field, and its answer.

The field is a completion suggester (an in-memory FST per segment, not a query over an
inverted index), chosen over edge-ngram prefix fields because a suggestion is then a lookup
that costs the same however many products share a prefix, ranks by a stored weight with no
scoring, and de-duplicates equal suggestions (``skip_duplicates``) in the engine.  What the
field holds, and how a prefix is keyed, is :mod:`analysis.suggestions` (ingest writes it); one
suggester per kind in one request reads it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from analysis.suggestions import BRAND, CATEGORY, KINDS, MAX_PREFIX_CHARS, TITLE, suggestion_key
from mappings import fields

__all__ = ["KINDS", "TITLE", "BRAND", "CATEGORY", "Suggestion", "suggest_body", "parse_suggestions"]


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
