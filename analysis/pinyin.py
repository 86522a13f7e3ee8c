"""Pinyin: what ingest writes into the pinyin fields, and recognizing pinyin in a query.

Many shoppers type Chinese on a phone as pinyin (``lianyiqun``, ``lian yi qun``) or as the
first letters of the syllables (``ydx`` for 运动鞋).  Ingest writes, for titles, brands and
categories, the toneless syllables (``lian yi qun``) and their initials (``l y q``) as
space-separated tokens into fields of their own; a query's Latin words that read as pinyin
become phrase queries on those fields.

Both sides get their pinyin from :func:`syllables`, which runs ``pypinyin`` (MIT) in its
phrase-aware mode over the normalized text, so a polyphone reads the same in the index and in
the query (``银行`` is ``yin hang``, ``行走`` is ``xing zou``).  ``ü`` is written ``v`` (``lv``),
as phone keyboards type it.

A Latin word is read as pinyin only when it segments completely into valid syllables
(:func:`segment`) and is not a word the caller knows (the index's own Latin words and brand
names: ``nike`` would segment as ``ni ke``); a single syllable alone is not pinyin (``man``,
``long`` are English too).  A word of 2 to 12 consonants that is no known word reads as
initials (``ydx``); words with a vowel are never initials (``ahc`` is a brand, not 啊…).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Collection, Sequence

from .normalize import is_cjk, normalize_text

__all__ = ["syllables", "pinyin_text", "initials_text", "segment", "valid_syllables", "PinyinRun",
           "find_pinyin", "PINYIN_VERSION", "INITIALS", "FULL"]

# raised whenever the pinyin written for the same text changes (ingest hashes it)
PINYIN_VERSION = 1

FULL = "pinyin"
INITIALS = "initials"

_CONSONANTS = frozenset("bpmfdtnlgkhjqxrzcsyw")
_ALPHA = re.compile(r"^[a-z]+$")
_SPLIT = re.compile(r"[^a-z0-9]+")
MAX_SEGMENTATIONS = 3
MAX_INITIALS = 12

_lock = threading.Lock()
_syllable_set: frozenset[str] | None = None


def _pypinyin():
    import pypinyin   # about a second to import its dictionaries: only when pinyin is needed

    return pypinyin


def valid_syllables() -> frozenset[str]:
    """Every toneless Mandarin syllable pypinyin knows (``ü`` as ``v``), interjections left out.

    ``m``, ``n``, ``ng``, ``hm``, ``hng`` (interjections) would let almost any English word
    segment; they are not syllables a shopper types.
    """
    global _syllable_set
    with _lock:
        if _syllable_set is None:
            pp = _pypinyin()
            from pypinyin.contrib.tone_convert import to_normal
            from pypinyin.pinyin_dict import pinyin_dict

            out = set()
            for readings in pinyin_dict.values():
                for r in readings.split(","):
                    s = to_normal(r.strip()).replace("ü", "v")
                    if _ALPHA.match(s) and any(ch in "aeiouv" for ch in s):
                        out.add(s)
            out -= {"hm", "hng", "ng", "m", "n", "ê"}
            del pp
            _syllable_set = frozenset(out)
        return _syllable_set


@lru_cache(maxsize=16384)
def _han_syllables(run: str) -> tuple[str, ...]:
    pp = _pypinyin()
    return tuple(s.replace("ü", "v") for s in pp.lazy_pinyin(run, style=pp.Style.NORMAL, v_to_u=False))


def syllables(text: str | None) -> list[tuple[str, bool]]:
    """``(piece, is_han)`` of the normalized text: one toneless syllable per Han character
    (phrase-aware), and every other run of letters or digits as one Latin piece."""
    norm = normalize_text(text)
    out: list[tuple[str, bool]] = []
    i, n = 0, len(norm)
    while i < n:
        j = i
        if is_cjk(norm[i]):
            while j < n and is_cjk(norm[j]):
                j += 1
            out.extend((s, True) for s in _han_syllables(norm[i:j]))
        else:
            while j < n and not is_cjk(norm[j]):
                j += 1
            out.extend((w, False) for w in _SPLIT.split(norm[i:j]) if w)
        i = j
    return out


def pinyin_text(text: str | None) -> str:
    """What ingest writes into the full-pinyin field: syllables and Latin words, space-joined
    (``T恤 夏 nike`` -> ``t xu xia nike``), so phrases may mix both."""
    return " ".join(p for p, _ in syllables(text))


def initials_text(text: str | None) -> str:
    """What ingest writes into the initials field: the first letter of every Han syllable
    (``运动鞋`` -> ``y d x``); Latin words are left out (a shopper types them whole)."""
    return " ".join(p[0] for p, han in syllables(text) if han)


def segment(word: str, *, limit: int = MAX_SEGMENTATIONS) -> list[tuple[str, ...]]:
    """The ways ``word`` (lower-case letters, ``'`` allowed as a syllable break) splits into
    valid syllables, fewest syllables first; ``[]`` when it does not split completely.

    Where a consonant could end one syllable or start the next (``fangan``: ``fan gan`` or
    ``fang an``), the split whose next syllable starts with a consonant comes first, the
    reading pinyin spelling implies (``fang'an`` needs the apostrophe).
    """
    sylls = valid_syllables()
    parts = [p for p in word.split("'") if p]
    if not parts or not all(_ALPHA.match(p) for p in parts):
        return []
    per_part: list[list[tuple[str, ...]]] = []
    for part in parts:
        n = len(part)
        # ways[i]: segmentations of part[i:], at most a few each (fewest syllables first)
        ways: list[list[tuple[str, ...]]] = [[] for _ in range(n + 1)]
        ways[n] = [()]
        for i in range(n - 1, -1, -1):
            found: list[tuple[str, ...]] = []
            for j in range(min(n, i + 6), i, -1):
                s = part[i:j]
                if s in sylls:
                    found.extend((s, *rest) for rest in ways[j])
            found.sort(key=lambda seg: (len(seg), 0 if len(seg) < 2 or seg[1][0] in _CONSONANTS else 1))
            ways[i] = found[:limit * 2]
        if not ways[0]:
            return []
        per_part.append(ways[0][:limit])
    out: list[tuple[str, ...]] = [()]
    for options in per_part:
        out = [(*a, *b) for a in out for b in options][:limit]
    return out


@dataclass(frozen=True)
class PinyinRun:
    """Query words ``tokens[start:end]`` read as pinyin.

    ``kind`` is :data:`FULL` (``readings`` are syllable sequences, fewest first) or
    :data:`INITIALS` (one reading, the letters)."""

    start: int
    end: int
    surface: str
    kind: str
    readings: tuple[tuple[str, ...], ...]

    def phrases(self) -> tuple[str, ...]:
        return tuple(" ".join(r) for r in self.readings)


def _initials(token: str) -> bool:
    return 2 <= len(token) <= MAX_INITIALS and _ALPHA.match(token) is not None and set(token) <= _CONSONANTS


def find_pinyin(tokens: Sequence[str], known: Collection[str] = ()) -> tuple[PinyinRun, ...]:
    """Runs of the query's tokens that read as pinyin or initials (see the module docstring).

    ``known``: normalized Latin words that are words, not pinyin (the index's own words,
    brand names); a known word that is a single syllable still joins a run (titles write
    ``lan kou`` too), and a run needs at least two syllables, so ``man`` alone stays English.
    Adjacent pinyin tokens form one run (``lian yi qun``).
    """
    out: list[PinyinRun] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if (tok in known and segment(tok)[:1] != [(tok,)]) or not _ALPHA.match(tok.replace("'", "")):
            i += 1
            continue
        if _initials(tok):
            out.append(PinyinRun(i, i + 1, tok, INITIALS, (tuple(tok),)))
            i += 1
            continue
        j, parts = i, []
        while j < n and not _initials(tokens[j]):
            seg = segment(tokens[j])
            # a known word ends the run, unless it is one syllable (listings spell 蔻 as "kou" too)
            if not seg or (tokens[j] in known and seg[0] != (tokens[j],)):
                break
            parts.append(seg)
            j += 1
        if not parts:
            i += 1
            continue
        readings: list[tuple[str, ...]] = [()]
        for options in parts:
            readings = [(*a, *b) for a in readings for b in options][:MAX_SEGMENTATIONS]
        if len(readings[0]) >= 2:
            out.append(PinyinRun(i, j, " ".join(tokens[i:j]), FULL, tuple(readings)))
        i = j
    return tuple(out)
