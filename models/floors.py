"""Relevance floors: how close a k-NN neighbour must be to count as a real match when no word matched.

A text embedding puts every query fairly near every product, so "the nearest products" exist for
random letters too.  The score above which a neighbour is a real match is a property of the
vectors, not of a search profile: it changes with the text encoder, with a trained text head and,
for text -> image, with every catalog's image head.  So the floors live with the space:

- ``text_knn``: for the bare text encoder (identity text head), a figure chosen per encoder on the
  val-split indices (``bench/bench_floor.py``: above the best hit of every nonsense query there);
  a trained text head has none (nothing calibrated it);
- ``text_image_knn``: calibrated by ``cmsearch train`` for the catalog's heads
  (:mod:`models.training.floors`) and written into the heads manifest.

Scores are the engine's for cosine spaces, ``(1 + cos) / 2``.  A profile asks for the space's
floor with ``"no_words_min_score": "space"``; where the space knows none, that retriever has no
floor (the nearest products stay matches, as before floors existed).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["TEXT_ENCODER_FLOORS", "space_floors"]

# text encoder name (the models manifest's) -> no-words floor of text k-NN with the identity text head
TEXT_ENCODER_FLOORS = {"intfloat/multilingual-e5-small": 0.935}


def space_floors(manifest: Mapping[str, Any], heads_manifest: Mapping[str, Any] | None) -> dict[str, float]:
    """The no-words floors a space knows, by retriever kind (absent: none known)."""
    heads = heads_manifest or {}
    out = {str(k): float(v) for k, v in (heads.get("floors") or {}).items()}
    identity_text = not (heads.get("text_head") or {}).get("file")
    text_floor = TEXT_ENCODER_FLOORS.get(str((manifest.get("text") or {}).get("name")))
    if identity_text and text_floor is not None:
        out.setdefault("text_knn", text_floor)
    return out
