"""Relationship boosts: constant lifts for the brand, category and relations a query names.

A ``hybrid`` query cannot be wrapped in ``function_score``, so boosts are
ordinary ``bool.should`` clauses placed *inside* each retriever's sub-query.
Each is a ``constant_score`` so it adds a fixed amount (no BM25 idf games:
a rare brand must not be lifted more than a common one), multiplied by the
retriever's ``boost_scale`` so it means the same in BM25 units and in cosine
units.  Each clause carries a ``_name`` (``brand:sk-ii``, ``category:家居>家具``)
so a hit's ``matched_queries`` says which boosts applied, for explain.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis import category_leaf_name, category_parent
from mappings import fields

from .dsl import ConstantScore, Query, Terms
from .profile import BoostSpec
from .understand import Understanding

__all__ = ["Boost", "plan_boosts", "boost_clauses", "BOOST_KINDS", "EXPANSION_KINDS"]

# boost kinds, the prefix of each clause's _name; the brand and related boosts are named
# for the field they match
BRAND_BOOST, CATEGORY_BOOST, PARENT_BOOST, ACCESSORY_BOOST, RELATED_BOOST = (
    fields.BRAND, "category", "parent_category", "accessory", fields.RELATED)
BOOST_KINDS = (BRAND_BOOST, CATEGORY_BOOST, PARENT_BOOST, ACCESSORY_BOOST, RELATED_BOOST)
# relationship expansions: products the query's words may never match (a phone case for 手机),
# so the lexical retriever also *retrieves* them; the other boosts only lift what it matched
EXPANSION_KINDS = (ACCESSORY_BOOST, RELATED_BOOST)


@dataclass(frozen=True)
class Boost:
    """One boost, before scaling: which field/values it matches and how strong it is."""

    kind: str
    label: str
    field: str
    values: tuple[str, ...]
    strength: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.label}"


def plan_boosts(u: Understanding, spec: BoostSpec, context_product_ids: tuple[str, ...] = ()) -> tuple[Boost, ...]:
    """The boosts a query earns, independent of retriever (pure, deterministic order)."""
    if not spec.enabled:
        return ()
    out: list[Boost] = []
    if spec.brand > 0:
        for b in u.brands:
            out.append(Boost(BRAND_BOOST, b, fields.BRAND, (b,), spec.brand))
    cat_strength: dict[str, float] = {}
    cat_certainty: dict[str, float] = {}  # 1 for a typed category, the probability for a seen one
    for c in u.categories:
        base = spec.category if c.source == "text" else spec.image_category
        cat_strength[c.path] = max(cat_strength.get(c.path, 0.0), base * c.strength)
        cat_certainty[c.path] = max(cat_certainty.get(c.path, 0.0), c.strength)
    for path, s in cat_strength.items():
        if s > 0:
            out.append(Boost(CATEGORY_BOOST, path, fields.CATEGORY_PATH, (path,), s))
    if spec.parent_category > 0:
        parents: dict[str, float] = {}
        for path, certainty in cat_certainty.items():
            parent = category_parent(path)
            if parent is not None and parent not in cat_strength:
                parents[parent] = max(parents.get(parent, 0.0), spec.parent_category * certainty)
        for parent, s in parents.items():
            if s > 0:
                out.append(Boost(PARENT_BOOST, parent, fields.CATEGORY_PATH, (parent,), s))
    if spec.accessory > 0:
        targets = list(u.brands)
        for path in cat_strength:
            targets.extend((path, category_leaf_name(path)))
        targets = list(dict.fromkeys(targets))
        if targets:
            out.append(Boost(ACCESSORY_BOOST, "+".join(targets), fields.ACCESSORY_OF, tuple(targets), spec.accessory))
    if spec.related > 0 and context_product_ids:
        out.append(Boost(RELATED_BOOST, "+".join(context_product_ids), fields.RELATED, tuple(context_product_ids),
                         spec.related))
    return tuple(out)


def boost_clauses(boosts: tuple[Boost, ...], scale: float) -> tuple[Query, ...]:
    """The boosts as ``constant_score`` clauses in one retriever's score units."""
    if scale <= 0:
        return ()
    return tuple(ConstantScore(Terms(b.field, b.values), boost=round(b.strength * scale, 6), name=b.name)
                 for b in boosts)
