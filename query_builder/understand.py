"""Understanding a query: the same normalization and segmentation as ingest, plus mentions.

Nothing the shopper typed is dropped: every token goes to the lexical query.
Recognized brands and categories are *added* as boosts; a photo contributes
the classifier's top categories (as boosts scaled by probability) and the
brands readable on its packaging (OCR).
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis import BRAND_MENTION, Mentions, Tokenizer, Vocabulary, normalize_text

from .profile import Profile
from .request import SearchRequest

__all__ = ["CategoryBoost", "Understanding", "understand"]


@dataclass(frozen=True)
class CategoryBoost:
    """A category to lift: its indexed path, a strength in (0, 1], and where it came from."""

    path: str
    strength: float
    source: str  # "text" or "photo"


@dataclass(frozen=True)
class Understanding:
    text: str                                # normalized (and possibly truncated) query text
    tokens: tuple[str, ...]                  # what the lexical query matches
    brands: tuple[str, ...] = ()             # indexed brand values to lift (text and photo)
    categories: tuple[CategoryBoost, ...] = ()
    mentions: Mentions = Mentions()          # found in the query text
    photo_mentions: Mentions = Mentions()    # found in the photo's OCR text
    notes: tuple[str, ...] = ()

    @property
    def lexical_text(self) -> str:
        return " ".join(self.tokens)

    @property
    def category_paths(self) -> tuple[str, ...]:
        return tuple(c.path for c in self.categories)


def _truncate(text: str, limit: int) -> str:
    """Cut at ``limit`` characters, backing off to a space if one is near (no half Latin word)."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit - 20 and space > 0:
        cut = cut[:space]
    return cut.rstrip()


def understand(request: SearchRequest, profile: Profile, tokenizer: Tokenizer,
               vocabulary: Vocabulary | None = None) -> Understanding:
    """Normalize, truncate, tokenize and recognize; pure (the vocabulary is passed in)."""
    notes: list[str] = []
    norm = normalize_text(request.text)
    if len(norm) > profile.max_query_chars:
        notes.append(f"query text was {len(norm)} characters; only the first {profile.max_query_chars} were used")
        norm = _truncate(norm, profile.max_query_chars)
    tokens = tokenizer.tokens(norm)
    if len(tokens) > profile.max_query_tokens:
        notes.append(f"query had {len(tokens)} words; only the first {profile.max_query_tokens} were used")
        tokens = tokens[: profile.max_query_tokens]
    if request.text and request.text.strip() and not tokens:
        notes.append("query text holds no words (only punctuation or symbols); it was not used for lexical search")

    mentions = vocabulary.find(norm) if vocabulary is not None and norm else Mentions()
    photo_text = normalize_text(request.image_text)[: profile.max_query_chars * 4]
    photo_mentions = vocabulary.find(photo_text) if vocabulary is not None and photo_text else Mentions()
    # the photo's text only feeds brand recognition: packaging text names brands
    # reliably, while its other words (ingredients, slogans) would only add noise
    photo_mentions = Mentions(brands=photo_mentions.brands,
                              spans=tuple(s for s in photo_mentions.spans if s.kind == BRAND_MENTION))

    strengths: dict[str, tuple[float, str]] = {}
    for path in mentions.categories:
        strengths[path] = (1.0, "text")
    ranked = sorted(request.image_categories, key=lambda lp: -lp[1])
    taken = 0
    for label, prob in ranked:
        if taken >= profile.photo.top_categories or prob < profile.photo.min_probability:
            break
        taken += 1
        paths = vocabulary.categories_named(label) if vocabulary is not None else (label,)
        for path in paths:
            prev = strengths.get(path)
            if prev is None or prev[0] < prob:
                strengths[path] = (min(float(prob), 1.0), prev[1] if prev else "photo")
    categories = tuple(CategoryBoost(p, s, src) for p, (s, src) in strengths.items())
    brands = tuple(dict.fromkeys((*mentions.brands, *photo_mentions.brands)))
    return Understanding(text=norm, tokens=tuple(tokens), brands=brands, categories=categories,
                         mentions=mentions, photo_mentions=photo_mentions, notes=tuple(notes))
