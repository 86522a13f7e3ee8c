"""Chinese/English word segmentation shared by ingest and the query builder.

The index's text fields use the ``whitespace`` analyzer: OpenSearch only splits
on spaces, so all word segmentation happens here, once, with the same
dictionary on both sides.  If ingest and query segmented differently, ``红色椅子``
indexed as ``红色 椅子`` would never meet a query segmented as ``红 色椅 子``.

Each :class:`Tokenizer` owns its own ``jieba.Tokenizer`` (never jieba's global
one, which other code in the same process may load other words into).  Loading
jieba's main dictionary costs about a second, so it happens lazily on first use
and only once per process: every Tokenizer starts from a copy of the same base
prefix dictionary, then adds its own user words (brands, category names,
multi-word terms like ``sk-ii``) with a frequency high enough to keep them whole.

jieba only segments Han characters and Latin words; every other letter it emits
as a word of its own, which would make ``кровать белая`` twelve words, trip the
long-query rule and leave the whitespace analyzer matching single letters.  So
each space-free chunk is first cut into script runs: Han, Latin, digits and
punctuation go to jieba as before; a run of letters of any other script
(Cyrillic, Greek, Hebrew, Arabic, Hangul, Devanagari ..., hiragana and katakana
each on their own) is one word, with its combining marks and inner hyphens or
apostrophes.  Scripts written without spaces and without a dictionary here
(Thai, long kana phrases) therefore give whole runs, not words: a query must
repeat the run to match it lexically, and the dense retrievers carry the rest.
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Iterable

import jieba

from .normalize import has_cjk, is_cjk, normalize_text

__all__ = ["Tokenizer"]

# jieba logs "Building prefix dict ..." at DEBUG on its own StreamHandler;
# a library must not print to a user's stderr.
logging.getLogger("jieba").setLevel(logging.WARNING)
jieba.setLogLevel(logging.WARNING)

# raised whenever a change to the rules below makes the same text give other tokens: ingest
# records it in every product's text hash, so a re-run rewrites the text fields it changed
SEGMENTATION_VERSION = 3   # 3: traditional characters normalized to simplified

_base_lock = threading.Lock()
_base: tuple[dict[str, int], int] | None = None

# a Latin word or number, possibly already holding inner joiners (jieba's HMM emits "3.5")
_ASCII_WORD = re.compile(r"^[a-z0-9](?:[a-z0-9.\-_'&]*[a-z0-9])?$")
# joiners allowed inside one Latin/number token: 3.5mm, sk-ii, wi-fi, l'oreal, a_b
_INNER_JOINERS = set(".-_'&")
# thousands separators inside numbers ("3,000" -> "3000"), so prices read as one number
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# joiners allowed at the end of one: c++, c#
_TRAILING_JOINERS = set("+#")


# any character outside ASCII/Latin, general punctuation, CJK punctuation, Han and the
# full-width forms: only chunks holding one need the script split (a fast path for the rest)
_OTHER_SCRIPT = re.compile("[^\u0000-\u02ff\u2000-\u206f\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff"
                           "\uf900-\ufaff\uff00-\uffef]")
# characters kept inside a run of one script when letters of that script stand on both sides:
# hyphen, apostrophes, Hebrew geresh and gershayim (צה״ל)
_RUN_JOINERS = frozenset("-'\u2019\u05f3\u05f4")
_MARK = "mark"  # a combining mark, a prolonged-sound mark: belongs to the run before it


@lru_cache(maxsize=8192)
def _script_of(ch: str) -> str | None:
    """The script of a letter jieba cannot segment; None for what jieba handles (Han, Latin,
    ASCII digits, punctuation, symbols); :data:`_MARK` for a character that joins the run before it.

    The script is the first word of the character's Unicode name (``CYRILLIC SMALL LETTER A``),
    which the standard library has and which is stable across Unicode versions.
    """
    if is_cjk(ch):
        return None
    cat = unicodedata.category(ch)
    if cat[0] == "M" or ch == "\u30fc":        # marks; ー (KATAKANA-HIRAGANA PROLONGED SOUND MARK)
        return _MARK
    if cat[0] not in "LN":
        return None
    if ch.isascii():
        return None
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    if not first or first in ("LATIN", "CJK", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH", "MODIFIER"):
        return None
    if cat == "Nd":                              # a non-ASCII digit (٣): part of the run it sits in
        return _MARK
    return first.split("-", 1)[0]


def _script_runs(chunk: str) -> list[tuple[str, bool]]:
    """``chunk`` (no spaces) cut into ``(piece, is_word)``: ``is_word`` pieces are whole words of
    a script jieba cannot segment; the other pieces go to jieba."""
    if not _OTHER_SCRIPT.search(chunk):
        return [(chunk, False)]
    out: list[tuple[str, bool]] = []
    buf: list[str] = []
    script: str | None = None                    # script of the run in buf (None: a jieba piece)
    n = len(chunk)
    for i, ch in enumerate(chunk):
        s = _script_of(ch)
        if s == _MARK and buf:
            buf.append(ch)
            continue
        if s is None and script is not None and ch in _RUN_JOINERS and i + 1 < n \
                and _script_of(chunk[i + 1]) == script:
            buf.append(ch)                       # a joiner inside a word of that script
            continue
        if s == _MARK:
            s = None
        if s != script and buf:
            out.append(("".join(buf), script is not None))
            buf = []
        script = s
        buf.append(ch)
    if buf:
        out.append(("".join(buf), script is not None))
    return out


def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's main dictionary as a prefix-frequency dict, loaded once per process.

    Dictionary words that contain upper-case Latin letters (``T恤``, ``B超``) also
    get a lower-case entry, because all text is case-folded before segmentation.
    """
    global _base
    with _base_lock:
        if _base is None:
            loader = jieba.Tokenizer()
            loader.initialize()
            freq = dict(loader.FREQ)
            total = loader.total
            for word, f in list(freq.items()):
                if f and any("A" <= ch <= "Z" for ch in word):
                    low = word.lower()
                    if not freq.get(low):
                        freq[low] = f
                        total += f
                        for i in range(1, len(low)):
                            freq.setdefault(low[:i], 0)
            _base = (freq, total)
        return _base


def _is_word(token: str) -> bool:
    """A token worth indexing: it holds at least one letter or digit."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in token)


def _merge_latin(pieces: list[str]) -> list[str]:
    """Re-join Latin/number runs that jieba splits at joiners.

    jieba cuts ``3.5mm`` into ``3 . 5mm`` and ``sk-ii`` into ``sk - ii``; a
    product search wants them whole.  Only pieces that touch (there is no space
    between them: the caller feeds one space-free chunk) are joined, and a joiner
    is kept only between two ASCII words (or ``+``/``#`` at the end: ``c++``).
    """
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if not run:
            return
        # strip joiners that do not sit between two words
        while run and not _ASCII_WORD.match(run[0]):
            out.append(run.pop(0))
        tail: list[str] = []
        while run and not _ASCII_WORD.match(run[-1]) and not set(run[-1]) <= _TRAILING_JOINERS:
            tail.insert(0, run.pop())
        if run:
            out.append("".join(run))
        out.extend(tail)
        run.clear()

    for p in pieces:
        if _ASCII_WORD.match(p):
            if run and _ASCII_WORD.match(run[-1]):
                run[-1] += p  # two ASCII pieces side by side (a dictionary split inside a Latin word)
            else:
                run.append(p)
        elif run and (set(p) <= _INNER_JOINERS or set(p) <= _TRAILING_JOINERS):
            run.append(p)
        else:
            flush()
            out.append(p)
    flush()
    return out


class Tokenizer:
    """jieba segmentation with the project's normalization and user words.

    ``user_words`` are kept whole: brand names (``雅诗兰黛``, ``sk-ii``), category
    names, product-line names.  Words containing spaces are skipped: segmentation
    never crosses a space, and their Latin parts are whole words anyway.

    ``hmm`` turns on jieba's HMM for runs of characters not in the dictionary
    (``兰蔻`` becomes one word instead of ``兰 蔻``).  Ingest and query must use
    the same setting; the default is jieba's own (on).

    Instances are safe to share between threads once built; the jieba state is
    created on first use.
    """

    def __init__(self, user_words: Iterable[str] = (), *, hmm: bool = True) -> None:
        words = []
        seen = set()
        for w in user_words:
            n = normalize_text(w)
            if n and " " not in n and n not in seen:
                seen.add(n)
                words.append(n)
        self._user_words = tuple(words)
        self.hmm = hmm
        self._jieba: jieba.Tokenizer | None = None
        self._lock = threading.Lock()

    @property
    def user_words(self) -> tuple[str, ...]:
        return self._user_words

    @property
    def version(self) -> int:
        """The segmentation rules' version (:data:`SEGMENTATION_VERSION`)."""
        return SEGMENTATION_VERSION

    def with_words(self, more: Iterable[str]) -> "Tokenizer":
        """A new Tokenizer with these user words added (this one is unchanged)."""
        return Tokenizer((*self._user_words, *more), hmm=self.hmm)

    def _engine(self) -> jieba.Tokenizer:
        if self._jieba is not None:
            return self._jieba
        with self._lock:
            if self._jieba is None:
                freq, total = _base_dictionary()
                tk = jieba.Tokenizer()
                tk.FREQ = dict(freq)
                tk.total = total
                tk.initialized = True
                for w in self._user_words:
                    if len(w) < 2 or tk.FREQ.get(w):
                        # single characters are tokens anyway; dictionary words
                        # already segment the same way on both sides, and raising
                        # their frequency would pull neighbouring characters apart
                        continue
                    # jieba's own estimate of the frequency that keeps w whole,
                    # raised so that it also wins against neighbouring words
                    tk.add_word(w, max(tk.suggest_freq(w, False) * 10, 1_000))
                self._jieba = tk
        return self._jieba

    def warm_up(self) -> "Tokenizer":
        """Load the dictionary now instead of on the first call (startup, not first query)."""
        self._engine()
        return self

    def tokens(self, text: str | None, *, for_index: bool = False) -> list[str]:
        """Normalized words of ``text``: punctuation and whitespace dropped.

        Latin words and numbers stay whole (``iphone15``, ``3.5mm``, ``sk-ii``).
        ``for_index=True`` also emits the dictionary words inside long Chinese
        words (jieba's search mode: ``人体工学`` -> ``人体 工学 人体工学``), so a
        query for a shorter word still finds the indexed longer one.
        """
        norm = _THOUSANDS.sub("", normalize_text(text))
        if not norm:
            return []
        tk = self._engine()
        out: list[str] = []
        for chunk in norm.split(" "):
            pieces = []
            for piece, whole in _script_runs(chunk):
                if whole:
                    pieces.append(piece)
                else:
                    pieces.extend(tk.cut(piece, HMM=self.hmm))
            pieces = _merge_latin(pieces)
            for p in pieces:
                if not _is_word(p):
                    continue
                if for_index and len(p) > 2 and has_cjk(p):
                    out.extend(self._subwords(tk, p))
                out.append(p)
        return out

    @staticmethod
    def _subwords(tk: jieba.Tokenizer, word: str) -> list[str]:
        """Dictionary 2- and 3-grams inside a long word (as jieba's cut_for_search)."""
        subs = []
        for n in (2, 3):
            if len(word) > n:
                for i in range(len(word) - n + 1):
                    gram = word[i:i + n]
                    if tk.FREQ.get(gram) and _is_word(gram):
                        subs.append(gram)
        return subs

    def field_text(self, text: str | None) -> str:
        """Space-joined index tokens: the value ingest writes into a text field."""
        return " ".join(self.tokens(text, for_index=True))

    def query_text(self, text: str | None) -> str:
        """Space-joined query tokens: what the lexical query sends to the whitespace analyzer."""
        return " ".join(self.tokens(text))

    def __repr__(self) -> str:
        return f"Tokenizer(user_words={len(self._user_words)}, hmm={self.hmm})"
