"""What a search returns: typed hits, facets, notes and (optionally) explanations."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from mappings import fields

from .facets import Facets
from .retrievers import RETRIEVERS
from .understand import Understanding

__all__ = ["RetrieverScore", "HitExplain", "Hit", "SearchResult", "hit_from_source", "hit_id", "best_image_url",
           "matched_boosts", "understanding_extras"]


@dataclass(frozen=True)
class RetrieverScore:
    retriever: str
    raw: float | None          # the retriever's own score (BM25, k-NN score), None if it missed the product
    normalized: float | None   # after the fusion's normalization
    rank: int | None           # 1-based position in the retriever's list


@dataclass(frozen=True)
class HitExplain:
    retrievers: tuple[RetrieverScore, ...]
    boosts: tuple[str, ...]    # names of the boosts that applied, e.g. "brand:sk-ii"
    final: float
    fusion: str                # e.g. "min_max + arithmetic_mean (weights 0.5, 0.5), server"


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    brand: str
    category: str
    price: float | None
    image_url: str | None      # the best-matching image when an image retriever ran, else the first one
    score: float
    explain: HitExplain | None = None
    region: tuple[int, int, int, int] | None = None   # a region search: the box (left, top, right, bottom) that found it
    variants: tuple[str, ...] = ()   # near-duplicates folded into this hit (profile ``collapse``)


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    total: int                 # products really matched (any retriever; k-NN ones above their floor)
    facets: Facets = field(default_factory=Facets)
    notes: tuple[str, ...] = ()
    fusion_path: str = "single"   # "single", "server" or "client"
    profile: str = ""
    retrievers: tuple[str, ...] = ()
    understanding: Understanding | None = None
    took_ms: float = 0.0
    low_confidence: bool = False   # nothing really matched; the hits are only the nearest (profile no_match)

    def to_dict(self) -> dict[str, Any]:
        d = {"hits": [_hit_dict(h) for h in self.hits], "total": self.total, "facets": self.facets.to_dict(),
             "low_confidence": self.low_confidence,
             "notes": list(self.notes), "fusion_path": self.fusion_path, "profile": self.profile,
             "retrievers": list(self.retrievers), "took_ms": round(self.took_ms, 1)}
        if self.understanding is not None:
            u = self.understanding
            d["understanding"] = {"text": u.text, "tokens": list(u.tokens), "brands": list(u.brands),
                                  "categories": [asdict(c) for c in u.categories], **understanding_extras(u)}
            d["did_you_mean"] = u.did_you_mean
        return d

    @property
    def did_you_mean(self) -> str | None:
        """The query with spelling corrections applied, when any was (its words were searched too)."""
        return self.understanding.did_you_mean if self.understanding is not None else None


def understanding_extras(u: Understanding) -> dict[str, Any]:
    """What explain shows of the Chinese query helpers: the query as typed, its pinyin readings,
    corrections and synonyms (empty parts left out)."""
    out: dict[str, Any] = {"original": u.original}
    if u.pinyin:
        out["pinyin"] = [{"words": r.surface, "as": r.kind, "readings": list(r.phrases())} for r in u.pinyin]
    if u.fuzzy_words:
        out["fuzzy"] = list(u.fuzzy_words)
    if u.corrections:
        out["corrections"] = [asdict(c) for c in u.corrections]
    if u.synonyms:
        out["synonyms"] = [{"words": m.surface, "alternatives": [" ".join(a) for a in m.alternatives],
                            "replace": m.replace} for m in u.synonyms]
    return out


def _hit_dict(h: Hit) -> dict[str, Any]:
    d = asdict(h)
    if h.region is None:      # only region searches carry a box
        del d["region"]
    else:
        d["region"] = list(h.region)
    return d


def _url_from(src: Mapping[str, Any]) -> str | None:
    for key in (fields.nested(fields.IMAGE_URL), fields.IMAGE_URL):  # doc values name the full path
        if src.get(key):
            return src[key]
    nested = src.get(fields.IMAGES)
    if isinstance(nested, Mapping):
        return nested.get(fields.IMAGE_URL)
    if isinstance(nested, list) and nested and isinstance(nested[0], Mapping):
        return nested[0].get(fields.IMAGE_URL)
    return None


def best_image_url(hit: Mapping[str, Any]) -> str | None:
    """The inner hit of an image retriever (photo match first), else the product's first image."""
    inner = hit.get("inner_hits") or {}
    image_retrievers = sorted((k for k in RETRIEVERS.values() if k.nested and k.name in inner),
                              key=lambda k: k.image_priority)
    for name in (k.name for k in image_retrievers):
        hits = (((inner.get(name) or {}).get("hits") or {}).get("hits")) or []
        if hits:
            url = _url_from(_display_fields(hits[0]))
            if url:
                return url
    urls = _display_fields(hit).get(fields.IMAGE_URLS)
    return str(urls) if urls else None


def matched_boosts(hit: Mapping[str, Any]) -> set[str]:
    """Boost names among a hit's ``matched_queries`` (retriever names are left out)."""
    mq = hit.get("matched_queries") or []
    if isinstance(mq, Mapping):  # include_named_queries_score returns {name: score}
        mq = list(mq)
    return {m for m in mq if ":" in m}


def _display_fields(hit: Mapping[str, Any]) -> dict[str, Any]:
    """A hit's display fields: from doc values (``fields``, lists) or, as a fallback, ``_source``."""
    out = dict(hit.get("_source") or {})
    for name, values in (hit.get("fields") or {}).items():
        out[name] = values[0] if isinstance(values, list) and values else values
    return out


def hit_id(hit: Mapping[str, Any]) -> str:
    """The product id of a raw hit: from doc values (bodies skip stored fields, so no ``_id``), else ``_id``."""
    values = (hit.get("fields") or {}).get(fields.ID)
    if values:
        return str(values[0] if isinstance(values, list) else values)
    return str(hit["_id"])


def hit_from_source(hit: Mapping[str, Any], score: float, explain: HitExplain | None = None) -> Hit:
    src = _display_fields(hit)
    price = src.get(fields.PRICE)
    return Hit(id=hit_id(hit), title=str(src.get(fields.TITLE_RAW) or ""),
               brand=str(src.get(fields.BRAND) or ""), category=str(src.get(fields.CATEGORY_LEAF) or ""),
               price=float(price) if isinstance(price, (int, float)) else None, image_url=best_image_url(hit),
               score=float(score), explain=explain)
