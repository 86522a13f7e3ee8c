"""``--part i/N``: which records of a catalog one of N parallel loads takes.

N workers (on N machines, or N processes on one) load one catalog into one index by each
loading part ``i`` of ``N``.  Parts are numbered from **1** to N (``1/3``, ``2/3``, ``3/3``).

A product belongs to part ``int.from_bytes(sha256(id.encode("utf-8")).digest()[:8], "big") % N + 1``:
the first 8 bytes of the SHA-256 of its id (as the index's ``_id`` will be, so ``" 7 "`` and
``7`` are the same product) read as a big-endian unsigned integer, modulo N.  Python's
``hash()`` would not do: it is salted per process, so two workers would disagree.  SHA-256 is
in every language's standard library, so a tool outside this project can tell which part
holds an id.

Every record belongs to exactly one part, so each one is counted (indexed, rejected or
unchanged) by exactly one worker and skipped as another part's by the others:

- a record with an id belongs to the part of its id; duplicates of an id therefore land in
  the same part, which rejects the later ones as a single load would;
- a record with no readable id (malformed JSON, invalid UTF-8, id missing or unusable) has no
  hash, so it belongs to part 1, which rejects it once.

What the parts share is made safe for them running at once: each has its own checkpoint,
rejects file and lock (named by the part, :mod:`.load_options`); ``--create`` tolerates the
index being created by another part meanwhile (:func:`.target.prepare_index`);
``--delete-missing`` deletes only the part's own ids (:mod:`.deletions`); ``--recreate`` is
refused.  A part leaves the index's refresh interval alone and does not force-merge by
default, since no part knows whether it is the last to finish (:data:`PART_MERGE_NOTE`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Part", "PartError", "parse_part", "part_of", "PART_MERGE_NOTE"]

PART_MERGE_NOTE = ("not merged into one segment (a part cannot know the other parts are done): when every "
                   "part has finished, run any one part again with --force-merge; its products are unchanged, "
                   "so it only merges")

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class PartError(ValueError):
    """A ``--part`` that is not ``i/N`` with 1 <= i <= N."""


def part_of(pid: str, count: int) -> int:
    """The part (1..count) the product ``pid`` belongs to."""
    if count < 1:
        raise PartError(f"the number of parts must be at least 1, not {count}")
    digest = hashlib.sha256(pid.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@dataclass(frozen=True)
class Part:
    """Part ``number`` (1-based) of ``count``."""

    number: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise PartError(f"part {self.number}/{self.count}: the number of parts must be at least 1")
        if not 1 <= self.number <= self.count:
            raise PartError(f"part {self.number}/{self.count}: parts are numbered from 1 to {self.count}")

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"

    @property
    def suffix(self) -> str:
        """What names this part's own files (checkpoint, rejects): ``part-2-of-3``."""
        return f"part-{self.number}-of-{self.count}"

    def owns(self, pid: str | None) -> bool:
        """Whether the record with id ``pid`` (None: no readable id) is this part's."""
        if pid is None:
            return self.number == 1
        return part_of(pid, self.count) == self.number


def parse_part(text: str) -> Part:
    """``"2/3"`` -> ``Part(2, 3)``; anything else raises :class:`PartError` saying why."""
    m = _SPEC.match(text or "")
    if m is None:
        raise PartError(f"{text!r} is not i/N (e.g. 2/3: the second of three parts, numbered from 1)")
    return Part(int(m.group(1)), int(m.group(2)))
