"""Text normalization shared by ingest and the query builder.

Both sides of the index must see the same characters: a shopper who types
``ＳＫ－ＩＩ`` on a phone keyboard in full-width mode, or ``Estée Lauder`` with an
accent, has to match a title written ``SK-II`` or ``estee lauder``.  Every
string that reaches the tokenizer, the brand normaliser or the vocabulary goes
through :func:`normalize_text` first, so the rules live in exactly one place.

Traditional characters become simplified ones (``連衣裙`` -> ``连衣裙``) with OpenCC's
``t2s`` tables (``opencc-python-reimplemented``, Apache-2.0, pure Python): a shopper in Hong
Kong or Taiwan types traditional characters, most listings are simplified, and BM25 only
meets what is spelled the same.  OpenCC converts phrases before characters, so ``乾隆``
stays and ``乾燥`` becomes ``干燥``.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import opencc
from opencc import OpenCC

__all__ = ["normalize_text", "fold_key", "is_cjk", "has_cjk", "to_simplified"]

_t2s_lock = threading.Lock()
_t2s: tuple[OpenCC, frozenset[str]] | None = None


def _converter() -> tuple[OpenCC, frozenset[str] | None]:
    """OpenCC ``t2s`` and the characters its tables may change (None: unknown, convert everything).

    The character set comes from the package's own ``TS*.txt`` tables (one ``traditional TAB
    simplified`` pair a line); text holding none of them is returned as it is, without a parse.
    """
    global _t2s
    with _t2s_lock:
        if _t2s is None:
            cc = OpenCC("t2s")
            cc.convert("體")       # loads its dictionaries now, under the lock (read-only afterwards)
            starts: set[str] | None = set()
            tables = sorted((Path(opencc.__file__).parent / "dictionary").glob("TS*.txt"))
            for table in tables:
                for line in table.read_text(encoding="utf-8").splitlines():
                    key, _, values = line.partition("\t")
                    for value in values.split(" "):
                        if key == value:
                            continue
                        # the characters that change (all of the key when the lengths differ)
                        starts.update(k for k, v in zip(key, value) if k != v) if len(key) == len(value) \
                            else starts.update(key)
            _t2s = (cc, frozenset(starts) if tables else None)
        return _t2s


@lru_cache(maxsize=65536)
def _convert(text: str) -> str:
    return _converter()[0].convert(text)


def to_simplified(text: str) -> str:
    """Traditional Chinese -> simplified (OpenCC ``t2s``: phrases first, then characters)."""
    cc_starts = _converter()[1]
    if cc_starts is not None and not any(ch in cc_starts for ch in text):
        return text
    return _convert(text)

_WHITESPACE = re.compile(r"\s+")
# characters that only join or separate Latin words and carry no meaning of their own
# when a brand is compared loosely ("SK-II" == "sk ii" == "skii", "L'Oréal" == "loreal")
_LOOSE_DROP = re.compile(r"[\s\-_.·・'’`&+/]+")


def _fold_latin_accents(text: str) -> str:
    """Drop combining marks that sit on Latin letters (é -> e), and only those.

    A blanket strip of combining marks would damage Japanese kana (が -> か) and
    other scripts, so a mark is dropped only when the character before it is Latin.
    """
    decomposed = unicodedata.normalize("NFD", text)
    if decomposed == text and text.isascii():
        return text
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch) and out and out[-1] < "\u0250":
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def normalize_text(text: str | None) -> str:
    """The one normal form for product and query text.

    - NFKC: full-width Latin letters, digits and punctuation become half-width
      (``ＡＨＣ１２３`` -> ``ahc123``, ``，`` -> ``,``), the ideographic space becomes
      a space, compatibility forms collapse (``ﬁ`` -> ``fi``).
    - Latin case folding (``Estée`` -> ``estee``: case and accents folded).
    - traditional Chinese -> simplified (``連衣裙`` -> ``连衣裙``, :func:`to_simplified`).
    - control and format characters (zero-width spaces, BOM, bidi marks) are
      removed; tabs and newlines count as whitespace.
    - runs of whitespace collapse to one space, ends stripped.

    ``None`` and the empty string give ``""``.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text))
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r\x0b\x0c" or cat == "Zs" or cat in ("Zl", "Zp"):
            chars.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            chars.append(ch)
    text = to_simplified("".join(chars).casefold())
    text = _fold_latin_accents(text)
    return _WHITESPACE.sub(" ", text).strip()


def fold_key(text: str | None) -> str:
    """A loose comparison key: normalized, with spaces and joiners removed.

    Used to decide that two spellings name the same brand or category
    (``SK-II``, ``sk ii``, ``skii``; ``Estee Lauder``, ``esteelauder``).  Never
    used as an indexed value, only to look one up.
    """
    return _LOOSE_DROP.sub("", normalize_text(text))


def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph (the characters jieba segments)."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2FA1F
            or 0xF900 <= cp <= 0xFAFF)


def has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)
