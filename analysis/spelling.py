"""Spelling corrections against the index's own words ("did you mean").

Built from the words the index holds (its titles', brands' and categories' tokens with their
document counts, read at the cluster edge), so a correction always names a word that finds
products.  Two kinds:

- *homophone*: a Chinese run of the query that is no indexed word but reads like one
  (``连衣群`` reads ``lian yi qun`` like ``连衣裙``) and differs from it in one character: the
  commonest such word.  Phone keyboards pick characters by pinyin, so this is the typo
  Chinese shoppers make most.
- *spelling*: a Latin word of four or more letters that the index does not know, one edit away
  from a known word (two for eight letters or more; a swap of two neighbours is one edit) with
  the same first letter (``nkie`` -> ``nike``).

Pure: no I/O; building the pinyin key of every Chinese word happens on first use.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Mapping

from .normalize import is_cjk
from .pinyin import syllables

__all__ = ["Correction", "Speller", "HOMOPHONE", "SPELLING", "MIN_LATIN"]

HOMOPHONE = "homophone"
SPELLING = "spelling"
MIN_LATIN = 4            # shorter Latin words are left as typed (too many neighbours)
_LATIN = re.compile(r"^[a-z]+$")
_MAX_HAN = 4


@dataclass(frozen=True)
class Correction:
    kind: str       # HOMOPHONE or SPELLING
    wrong: str      # as the query has it (normalized)
    right: str      # the index's word


def _edits(a: str, b: str, cap: int) -> int:
    """Optimal string alignment distance (a swap of neighbours is one edit), cut off above ``cap``."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2: list[int] | None = None
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > cap:
            return cap + 1
        prev2, prev = prev, cur
    return prev[-1]


def max_edits(word: str) -> int:
    return 1 if len(word) < 8 else 2


class Speller:
    """Corrections against ``terms`` (normalized word -> number of products holding it)."""

    def __init__(self, terms: Mapping[str, int]) -> None:
        self.terms = dict(terms)
        self._latin: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for t, df in self.terms.items():
            if _LATIN.match(t) and len(t) >= MIN_LATIN - 1:
                self._latin.setdefault((t[0], len(t)), []).append((t, df))
        self._by_sound: dict[str, list[tuple[str, int]]] | None = None
        self._by_initials: dict[str, list[tuple[str, int]]] | None = None
        self._lock = threading.Lock()

    def known(self, word: str) -> bool:
        return word in self.terms

    def _sound_index(self) -> dict[str, list[tuple[str, int]]]:
        with self._lock:
            return self._sound_index_unlocked()

    def _sound_index_unlocked(self) -> dict[str, list[tuple[str, int]]]:
        """Pinyin (toneless syllables) -> the indexed Chinese words so spelled, commonest first;
        the caller holds the lock."""
        if self._by_sound is None:
            index: dict[str, list[tuple[str, int]]] = {}
            for t, df in self.terms.items():
                if 2 <= len(t) <= _MAX_HAN and all(is_cjk(ch) for ch in t):
                    index.setdefault(_sound(t), []).append((t, df))
            for v in index.values():
                v.sort(key=lambda td: (-td[1], td[0]))
            self._by_sound = index
        return self._by_sound

    def _initials_index(self) -> dict[str, list[tuple[str, int]]]:
        with self._lock:
            if self._by_initials is None:
                index: dict[str, list[tuple[str, int]]] = {}
                for key, words in self._sound_index_unlocked().items():
                    index.setdefault("".join(s[0] for s in key.split(" ")), []).extend(words)
                for v in index.values():
                    v.sort(key=lambda td: (-td[1], td[0]))
                self._by_initials = index
            return self._by_initials

    def words_for_pinyin(self, sylls: tuple[str, ...], *, initials: bool = False) -> tuple[str, ...]:
        """Indexed Chinese words spelled by these syllables (or initials), left to right.

        The sequence is cut into pieces of two to four syllables that each spell an indexed word
        (the commonest one for that spelling), covering as many syllables as possible with as
        few pieces as possible, then with the commonest words; a syllable no word covers is
        left out.  This is how pinyin
        typed as one run (``boniaosuanximiannai``) meets listings that do not spell the
        phrase contiguously: the words (玻尿酸, 洗面奶) are searched like typed Chinese ones.
        """
        index = self._initials_index() if initials else self._sound_index()
        keys = [s[0] for s in sylls] if initials else list(sylls)
        n = len(keys)
        sep = "" if initials else " "
        # best[i]: (covered syllables, -pieces, products holding the words, words) for keys[:i]
        best: list[tuple[int, int, int, tuple[str, ...]]] = [(0, 0, 0, ())] * (n + 1)
        for i in range(1, n + 1):
            cand = best[i - 1]                                    # keys[i-1] left out
            for length in range(2, min(_MAX_HAN, i) + 1):
                words = index.get(sep.join(keys[i - length:i]))
                if words:
                    prev = best[i - length]
                    option = (prev[0] + length, prev[1] - 1, prev[2] + words[0][1], (*prev[3], words[0][0]))
                    if option[:3] > cand[:3]:
                        cand = option
            best[i] = cand
        return best[n][3]

    def latin(self, word: str) -> Correction | None:
        """The known word a misspelled Latin word most likely means, or None."""
        if len(word) < MIN_LATIN or not _LATIN.match(word) or word in self.terms:
            return None
        cap = max_edits(word)
        best: tuple[int, int, str] | None = None
        for length in range(len(word) - cap, len(word) + cap + 1):
            for t, df in self._latin.get((word[0], length), ()):
                d = _edits(word, t, cap)
                if d <= cap and (best is None or (d, -df, t) < best):
                    best = (d, -df, t)
        return Correction(SPELLING, word, best[2]) if best else None

    def homophones(self, text: str) -> list[Correction]:
        """Chinese runs of ``text`` (normalized) that read like an indexed word but are none."""
        out: list[Correction] = []
        i, n = 0, len(text)
        while i < n:
            if not is_cjk(text[i]):
                i += 1
                continue
            j = i
            while j < n and is_cjk(text[j]):
                j += 1
            out.extend(self._run(text[i:j]))
            i = j
        return out

    def _run(self, run: str) -> list[Correction]:
        if len(run) < 2:
            return []
        index = self._sound_index()
        covered = [False] * len(run)
        found: list[tuple[int, Correction]] = []
        for length in range(min(_MAX_HAN, len(run)), 1, -1):
            for s in range(len(run) - length + 1):
                if any(covered[s:s + length]):
                    continue
                w = run[s:s + length]
                if w in self.terms:
                    covered[s:s + length] = [True] * length
                    continue
                for cand, _df in index.get(_sound(w), ()):
                    if sum(a != b for a, b in zip(cand, w)) == 1:
                        found.append((s, Correction(HOMOPHONE, w, cand)))
                        covered[s:s + length] = [True] * length
                        break
        return [c for _, c in sorted(found, key=lambda sc: sc[0])]


def _sound(word: str) -> str:
    return " ".join(p for p, _ in syllables(word))
