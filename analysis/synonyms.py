"""Query-time synonyms from a file in the Solr synonyms format.

::

    # comments and blank lines are ignored
    T恤, 短袖, tee          # equivalence: any of them also searches the others
    运动鞋, 跑鞋
    sk2, skii => sk-ii       # explicit: the left side is replaced by the right side

Every entry is normalized (:func:`analysis.normalize.normalize_text`) and cut into words by
the same tokenizer as the query, and rules match whole word sequences of the query's tokens.
So the file needs no user dictionary of its own: ingest segments titles exactly as it did
before, and ``T恤`` in the file meets ``t恤`` in a title because both went through the one
normalizer and tokenizer.  Synonyms only change what a query asks for, never what is indexed.

A line that is not a rule (an empty side, ``=>`` twice) is an error naming the file and line.

No starter list ships.  The candidate, ``data/dictionary/synonym/CoreSynonym.txt`` in the Maven jar
``com.hankcs:hanlp:portable-1.8.6``, is HIT IR-Lab's Tongyici Cilin (Extended); the jar's POM
declares Apache-2.0 for HanLP but the jar carries no license text for that data, and HIT shares
the list under its own resource agreement (research use), so its terms do not clearly allow
shipping it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .normalize import normalize_text

__all__ = ["SynonymError", "SynonymRule", "SynonymTable", "SynonymMatch"]


class SynonymError(ValueError):
    """The synonym file is not in the Solr synonyms format."""


@dataclass(frozen=True)
class SynonymRule:
    sources: tuple[str, ...]    # normalized phrases that trigger the rule
    targets: tuple[str, ...]    # what they search too (equivalence) or instead (explicit)
    explicit: bool              # ``a => b``: the source is replaced


@dataclass(frozen=True)
class SynonymMatch:
    """Query tokens ``[start, end)`` (``surface``) matched a rule: ``alternatives`` are the
    token sequences searched too, or instead when ``replace``."""

    start: int
    end: int
    surface: str
    alternatives: tuple[tuple[str, ...], ...]
    replace: bool


def _split(side: str, where: str) -> tuple[str, ...]:
    parts = []
    for raw in side.replace("\\,", "\x00").split(","):
        p = normalize_text(raw.replace("\x00", ","))
        if not p:
            raise SynonymError(f"{where}: an empty entry between commas")
        parts.append(p)
    return tuple(dict.fromkeys(parts))


class SynonymTable:
    """Parsed rules; :meth:`matches` finds them in a query's tokens (longest match first)."""

    def __init__(self, rules: Iterable[SynonymRule] = (), source: str = "") -> None:
        self.rules = tuple(rules)
        self.source = source
        self._compiled: dict[int, tuple[object, dict[tuple[str, ...], list[tuple[SynonymRule, str]]]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, source: str = "synonyms") -> "SynonymTable":
        rules = []
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source} line {n}"
            if line.count("=>") > 1:
                raise SynonymError(f"{where}: '=>' appears more than once")
            if "=>" in line:
                left, right = line.split("=>")
                if not left.strip() or not right.strip():
                    raise SynonymError(f"{where}: '=>' needs words on both sides")
                rules.append(SynonymRule(_split(left, where), _split(right, where), True))
            else:
                terms = _split(line, where)
                if len(terms) < 2:
                    raise SynonymError(f"{where}: an equivalence needs two or more entries separated by ','")
                rules.append(SynonymRule(terms, terms, False))
        return cls(rules, source)

    @classmethod
    def load(cls, path: str | Path) -> "SynonymTable":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SynonymError(f"synonym file {path}: not UTF-8 text") from None
        except OSError as exc:
            raise SynonymError(f"synonym file {path}: cannot be read ({exc.strerror or exc})") from None
        return cls.parse(text, str(path))

    def __len__(self) -> int:
        return len(self.rules)

    def _table(self, tokenizer) -> dict[tuple[str, ...], list[tuple[SynonymRule, str]]]:
        """Token sequence of every source -> its rules, for this tokenizer (cached)."""
        key = id(tokenizer)
        with self._lock:
            hit = self._compiled.get(key)
            if hit is not None and hit[0] is tokenizer:
                return hit[1]
        table: dict[tuple[str, ...], list[tuple[SynonymRule, str]]] = {}
        for rule in self.rules:
            for s in rule.sources:
                toks = tuple(tokenizer.tokens(s))
                if toks:
                    table.setdefault(toks, []).append((rule, s))
        with self._lock:
            if len(self._compiled) > 8:
                self._compiled.clear()
            self._compiled[key] = (tokenizer, table)
        return table

    def matches(self, tokens: Sequence[str], tokenizer) -> tuple[SynonymMatch, ...]:
        """Rules found in ``tokens``, left to right, longest first, not overlapping."""
        table = self._table(tokenizer)
        if not table:
            return ()
        longest = max(len(k) for k in table)
        out: list[SynonymMatch] = []
        i, n = 0, len(tokens)
        while i < n:
            for length in range(min(longest, n - i), 0, -1):
                seq = tuple(tokens[i:i + length])
                rules = table.get(seq)
                if not rules:
                    continue
                alts: list[tuple[str, ...]] = []
                replace = any(r.explicit for r, _ in rules)
                for rule, _ in rules:
                    if replace and not rule.explicit:
                        continue
                    for t in rule.targets:
                        toks = tuple(tokenizer.tokens(t))
                        if toks and toks != seq and toks not in alts:
                            alts.append(toks)
                if replace and not alts:
                    alts.append(seq)
                if alts:
                    out.append(SynonymMatch(i, i + length, " ".join(seq), tuple(alts), replace))
                    i += length
                    break
            else:
                i += 1
        return tuple(out)
