"""Understanding a query: the same normalization and segmentation as ingest, plus mentions.

Nothing the shopper typed is dropped: every token goes to the lexical query.
Recognized brands and categories are *added* as boosts; a photo contributes
the classifier's top categories (as boosts scaled by probability) and the
brands readable on its packaging (OCR).
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis import BRAND_MENTION, Mentions, Tokenizer, Vocabulary, normalize_text
from analysis.pinyin import INITIALS, PinyinRun, find_pinyin
from analysis.spelling import MIN_LATIN, Correction
from analysis.synonyms import SynonymMatch, SynonymTable

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
    original: str = ""                       # the query text as typed
    pinyin: tuple[PinyinRun, ...] = ()       # query words read as pinyin or initials
    pinyin_words: tuple[str, ...] = ()       # the indexed Chinese words those runs spell
    fuzzy_words: tuple[str, ...] = ()        # Latin words the index does not know: matched fuzzily
    corrections: tuple[Correction, ...] = ()
    did_you_mean: str | None = None          # the query with the corrections applied
    corrected_tokens: tuple[str, ...] = ()   # its words, searched too (Chinese corrections)
    synonyms: tuple[SynonymMatch, ...] = ()
    synonym_variants: tuple[tuple[str, ...], ...] = ()   # the query's words with a synonym swapped in

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


MAX_SYNONYM_VARIANTS = 8


def _apply_synonyms(tokens: list[str], table: SynonymTable, tokenizer: Tokenizer
                    ) -> tuple[list[str], tuple[SynonymMatch, ...], tuple[tuple[str, ...], ...]]:
    """Explicit rules rewrite the words; equivalences give variants with one synonym swapped in."""
    matches = table.matches(tokens, tokenizer)
    out: list[str] = []
    variants: list[tuple[str, ...]] = []
    pos = 0
    spans = []                                  # (start, end) of each match in ``out``
    for m in matches:
        out.extend(tokens[pos:m.start])
        start = len(out)
        out.extend(m.alternatives[0] if m.replace else tokens[m.start:m.end])
        spans.append((start, len(out), m))
        pos = m.end
    out.extend(tokens[pos:])
    for start, end, m in spans:
        for alt in (m.alternatives[1:] if m.replace else m.alternatives):
            variants.append((*out[:start], *alt, *out[end:]))
    return out, matches, tuple(dict.fromkeys(variants))[:MAX_SYNONYM_VARIANTS]


def _corrections(norm: str, tokens: list[str], pinyin_tokens: set[int], vocabulary: Vocabulary | None,
                 profile: Profile, tokenizer: Tokenizer) -> tuple[tuple[str, ...], tuple[Correction, ...],
                                                             str | None, tuple[str, ...]]:
    """(fuzzy words, corrections, did-you-mean text, corrected words to search too)."""
    terms = vocabulary.terms if vocabulary is not None else {}
    fuzzy: list[str] = []
    if profile.lexical.fuzzy:
        for i, t in enumerate(tokens):
            if i not in pinyin_tokens and len(t) >= MIN_LATIN and t.isascii() and t.isalpha() and t not in terms:
                fuzzy.append(t)
    if not profile.lexical.corrections or not terms:
        return tuple(fuzzy), (), None, ()
    speller = vocabulary.speller()
    found = list(speller.homophones(norm))
    han = bool(found)
    for w in fuzzy:
        c = speller.latin(w)
        if c is not None:
            found.append(c)
    if not found:
        return tuple(fuzzy), (), None, ()
    fixed = norm
    for c in found:
        fixed = fixed.replace(c.wrong, c.right) if c.kind != "spelling" else \
            " ".join(c.right if w == c.wrong else w for w in fixed.split(" "))
    fixed_tokens = tuple(tokenizer.tokens(fixed)) if han else ()
    return tuple(fuzzy), tuple(found), fixed, fixed_tokens


def understand(request: SearchRequest, profile: Profile, tokenizer: Tokenizer,
               vocabulary: Vocabulary | None = None, synonyms: SynonymTable | None = None) -> Understanding:
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
    syn_matches: tuple[SynonymMatch, ...] = ()
    variants: tuple[tuple[str, ...], ...] = ()
    if synonyms is not None and len(synonyms) and tokens:
        tokens, syn_matches, variants = _apply_synonyms(tokens, synonyms, tokenizer)
    runs: tuple[PinyinRun, ...] = ()
    if profile.lexical.pinyin > 0 and tokens:
        runs = find_pinyin(tokens, vocabulary.latin_words() if vocabulary is not None else ())
    in_runs = {i for r in runs for i in range(r.start, r.end)}
    pinyin_words: list[str] = []
    if runs and vocabulary is not None and vocabulary.terms:
        speller = vocabulary.speller()
        for r in runs:
            spelled = [speller.words_for_pinyin(reading, initials=r.kind == INITIALS) for reading in r.readings]
            pinyin_words.extend(max(spelled, key=lambda ws: sum(len(w) for w in ws)))
    fuzzy, corrections, did_you_mean, corrected = _corrections(norm, tokens, in_runs, vocabulary, profile,
                                                               tokenizer)
    if profile.verbose_query_words and len(tokens) >= profile.verbose_query_words:
        # a pasted description: its many literal words decide (the words alone are searched), and a
        # fuzzy clause per word the titles do not hold made such a query several times slower, the
        # slowest text searches of all; spelling corrections (did you mean) are still offered
        fuzzy = ()
    if len(fuzzy) > profile.lexical.max_fuzzy_words:   # not typos: another vocabulary (LexicalSpec)
        fuzzy = ()

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
                         mentions=mentions, photo_mentions=photo_mentions, notes=tuple(notes),
                         original=request.text or "", pinyin=runs, pinyin_words=tuple(pinyin_words),
                         fuzzy_words=fuzzy, corrections=corrections,
                         did_you_mean=did_you_mean, corrected_tokens=corrected, synonyms=syn_matches,
                         synonym_variants=variants)
