"""The passage text of a product: what the text encoder reads for it, in training and in ingest alike.

The heads are trained on these passages and the index's text vectors are made from them, so
there is exactly one way to write one: the chosen fields joined by '. ', the category path
written "A > B > C" as customers read it, empty fields left out (a missing brand leaves no
stray separator), cut at ``max_chars``.
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["DEFAULT_TEXT_FIELDS", "PASSAGE_MAX_CHARS", "PASSAGE_FORMAT", "passage_text"]

DEFAULT_TEXT_FIELDS = ("title", "brand", "category", "description")
PASSAGE_MAX_CHARS = 1000
PASSAGE_FORMAT = "passage-1"   # bump when the rule below changes: it is part of the space's identity


def passage_text(product: Any, fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
                 max_chars: int = PASSAGE_MAX_CHARS) -> str:
    """``product`` is anything with ``title``, ``description``, ``brand``, ``category`` (a path
    tuple) and ``attributes``; other field names are read from the attributes (lists joined by
    commas), e.g. ``title_zh``."""
    attributes = getattr(product, "attributes", None) or {}
    parts = []
    for name in fields:
        if name == "category":
            value: Any = " > ".join(getattr(product, "category", ()) or ())
        elif name in ("title", "description", "brand"):
            value = getattr(product, name, "") or ""
        else:
            value = attributes.get(name, "")
            if isinstance(value, (list, tuple)):
                value = ", ".join(map(str, value))
        value = " ".join(str(value).split())
        if value:
            parts.append(value.rstrip("."))
    return ". ".join(parts)[:max_chars]
