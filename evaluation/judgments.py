"""Judgment sets: which products are relevant to which query, read from and written to files.

Two formats, because judgments come from two worlds:

- **TREC**: a qrels file (``query_id 0 doc_id grade`` per line, whitespace separated, the
  format ``trec_eval`` reads) plus a query file, either JSON lines
  (``{"id": "q1", "text": "red sofa", "image": "photos/q1.jpg"}``) or TSV
  (``id<TAB>text[<TAB>image]``).  A query carries text, an image path, or both; a relative image
  path is relative to the query file, so a judgment folder can be moved as a whole.
- **Search Relevance Workbench** (OpenSearch's SRW) import JSON:
  ``{"name": .., "judgmentRatings": [{"query": "red dress", "ratings": [{"docId": "B07", "rating": "2"}]}]}``.
  SRW has no image queries; an entry may carry an ``"image"`` key (our extension, ignored by SRW)
  and an ``"id"``; without an id the query id is a hash of the query text and image, so the same
  query keeps its id across runs and the results index can follow it over time.

Every problem is a :class:`JudgmentError` naming the file and the line (or JSON entry), because a
judgment file is usually written by a script and a silent skip would skew every metric.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

__all__ = ["JudgmentError", "JudgedQuery", "JudgmentSet", "read_qrels", "read_queries", "load_trec",
           "read_srw", "load_judgments", "write_trec", "write_srw", "query_id_for", "QRELS_NAME",
           "QUERIES_NAME"]

QRELS_NAME = "qrels.txt"
QUERIES_NAME = "queries.jsonl"


class JudgmentError(ValueError):
    """A judgment or query file is malformed; ``where`` is ``path:line`` or ``path: entry``."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def query_id_for(text: str | None, image: str | Path | None = None) -> str:
    """A stable id for a query that has none: a short hash of its text and image path."""
    blob = f"{(text or '').strip()}\x1f{image or ''}".encode("utf-8")
    return "q" + hashlib.sha1(blob).hexdigest()[:12]


@dataclass(frozen=True)
class JudgedQuery:
    """One query (text and/or image path) with its graded judgments ``doc_id -> grade``."""

    id: str
    text: str | None = None
    image: Path | None = None
    grades: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip() or any(c.isspace() for c in self.id):
            raise ValueError(f"query id must be a non-empty string without spaces, got {self.id!r}")
        text = self.text.strip() if isinstance(self.text, str) else None
        object.__setattr__(self, "text", text or None)
        if self.image is not None:
            object.__setattr__(self, "image", Path(self.image))
        if self.text is None and self.image is None:
            raise ValueError(f"query {self.id}: needs text, an image, or both")
        object.__setattr__(self, "grades", MappingProxyType(dict(self.grades)))

    @property
    def relevant(self) -> frozenset[str]:
        return frozenset(d for d, g in self.grades.items() if g > 0)

    @property
    def label(self) -> str:
        """How the query is shown in tables: its text, else the image file name."""
        return self.text if self.text else f"[image] {self.image.name}"


@dataclass(frozen=True)
class JudgmentSet:
    """Named, ordered queries with judgments."""

    name: str
    queries: tuple[JudgedQuery, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))
        ids = [q.id for q in self.queries]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"judgment set {self.name}: duplicate query id(s) {dup[:5]}")

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self):
        return iter(self.queries)

    def judged(self) -> "JudgmentSet":
        """Only the queries with at least one relevant document (the ones a metric is defined for)."""
        return JudgmentSet(self.name, tuple(q for q in self.queries if q.relevant))

    def subset(self, ids: Iterable[str], suffix: str = "") -> "JudgmentSet":
        keep = set(ids)
        return JudgmentSet(self.name + suffix, tuple(q for q in self.queries if q.id in keep))

    def head(self, n: int) -> "JudgmentSet":
        return JudgmentSet(self.name, self.queries[:n])

    def split(self, holdout: float, seed: int = 0) -> tuple["JudgmentSet", "JudgmentSet"]:
        """(train, held-out): a seeded shuffle of the queries, ``holdout`` share held out.

        Both parts keep at least one query when there are two or more, so tuning always has
        something to fit and something to report.
        """
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must be a fraction between 0 and 1, got {holdout!r}")
        ids = sorted(q.id for q in self.queries)
        random.Random(seed).shuffle(ids)
        n_hold = round(len(ids) * holdout)
        if len(ids) >= 2:
            n_hold = min(max(n_hold, 1), len(ids) - 1)
        held = set(ids[:n_hold])
        train = tuple(q for q in self.queries if q.id not in held)
        test = tuple(q for q in self.queries if q.id in held)
        return JudgmentSet(self.name + ":train", train), JudgmentSet(self.name + ":heldout", test)


# --- TREC ---------------------------------------------------------------------------------

def _grade(text: str, where: str) -> float:
    try:
        g = float(text)
    except ValueError:
        raise JudgmentError(where, f"grade {text!r} is not a number") from None
    if g != g or g in (float("inf"), float("-inf")):
        raise JudgmentError(where, f"grade {text!r} is not a finite number")
    return int(g) if g.is_integer() else g


def read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """``{query_id: {doc_id: grade}}`` from a TREC qrels file; the same pair twice with two grades is an error."""
    path = Path(path)
    out: dict[str, dict[str, float]] = {}
    seen_at: dict[tuple[str, str], int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JudgmentError(str(path), f"cannot read: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        parts = line.split()
        if len(parts) != 4:
            raise JudgmentError(where, f"expected 4 columns 'query_id iteration doc_id grade', got {len(parts)}")
        qid, _, doc, grade_text = parts
        grade = _grade(grade_text, where)
        if (qid, doc) in seen_at and out[qid][doc] != grade:
            raise JudgmentError(where, f"query {qid} doc {doc} already graded {out[qid][doc]} "
                                       f"on line {seen_at[(qid, doc)]}")
        seen_at[(qid, doc)] = n
        out.setdefault(qid, {})[doc] = grade
    return out


def _query_from_fields(data: Mapping[str, Any], base: Path, where: str) -> tuple[str, str | None, Path | None]:
    unknown = sorted(set(data) - {"id", "text", "image"})
    if unknown:
        raise JudgmentError(where, f"unknown key(s) {unknown}; allowed: id, text, image")
    qid, text, image = data.get("id"), data.get("text"), data.get("image")
    if qid is None:
        raise JudgmentError(where, "query has no 'id'")
    qid = str(qid).strip()
    if not qid or any(c.isspace() for c in qid):
        raise JudgmentError(where, f"query id {qid!r} is empty or contains spaces (qrels columns are space separated)")
    if text is not None and not isinstance(text, str):
        raise JudgmentError(where, f"'text' must be a string, got {type(text).__name__}")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise JudgmentError(where, "'image' must be a non-empty path string")
    text = text.strip() if text else None
    img = (base / image) if image else None
    if not text and img is None:
        raise JudgmentError(where, f"query {qid} has neither text nor image")
    return qid, text or None, img


def read_queries(path: str | Path) -> list[tuple[str, str | None, Path | None]]:
    """``(id, text, image)`` per query, from JSON lines (``.jsonl``/``.json``) or TSV (anything else)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JudgmentError(str(path), f"cannot read: {exc.strerror or exc}") from None
    is_json = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    out, seen = [], {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{n}"
        if is_json:
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JudgmentError(where, f"not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise JudgmentError(where, "each line must be a JSON object")
        else:
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) not in (2, 3):
                raise JudgmentError(where, f"expected 'id<TAB>text[<TAB>image]', got {len(cols)} column(s)")
            data = {"id": cols[0], "text": cols[1] or None}
            if len(cols) == 3 and cols[2].strip():
                data["image"] = cols[2].strip()
        qid, text, image = _query_from_fields(data, path.parent, where)
        if qid in seen:
            raise JudgmentError(where, f"query id {qid} already defined on line {seen[qid]}")
        seen[qid] = n
        out.append((qid, text, image))
    return out


def load_trec(qrels: str | Path, queries: str | Path, name: str | None = None) -> JudgmentSet:
    """A judgment set from a qrels file and its query file (query order is the query file's).

    A qrels query id missing from the query file is an error (its text is unknown); a query
    without qrels lines is kept with no judgments (metrics skip it and say so).
    """
    grades = read_qrels(qrels)
    rows = read_queries(queries)
    known = {r[0] for r in rows}
    missing = sorted(set(grades) - known)
    if missing:
        raise JudgmentError(str(qrels), f"{len(missing)} query id(s) not in {queries}: {missing[:5]}")
    qs = tuple(JudgedQuery(qid, text, image, grades.get(qid, {})) for qid, text, image in rows)
    return JudgmentSet(name or Path(qrels).parent.name or Path(qrels).stem, qs)


# --- Search Relevance Workbench -------------------------------------------------------------

def read_srw(path: str | Path, name: str | None = None) -> JudgmentSet:
    """A judgment set from SRW import JSON (an object with ``judgmentRatings``, or the bare list)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JudgmentError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise JudgmentError(f"{path}:{exc.lineno}", f"not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        entries = data.get("judgmentRatings")
        name = name or data.get("name")
        if entries is None:
            raise JudgmentError(str(path), "no 'judgmentRatings' list")
    else:
        entries = data
    if not isinstance(entries, list):
        raise JudgmentError(str(path), "'judgmentRatings' must be a list")
    queries, seen = [], {}
    for i, entry in enumerate(entries):
        where = f"{path}: judgmentRatings[{i}]"
        if not isinstance(entry, dict):
            raise JudgmentError(where, "must be an object with 'query' and 'ratings'")
        text, image = entry.get("query"), entry.get("image")
        if text is not None and not isinstance(text, str):
            raise JudgmentError(where, "'query' must be a string")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise JudgmentError(where, "'image' must be a non-empty path string")
        if not (text and text.strip()) and not image:
            raise JudgmentError(where, "has neither query text nor image")
        qid = str(entry["id"]).strip() if entry.get("id") is not None else query_id_for(text, image)
        if not qid or any(c.isspace() for c in qid):
            raise JudgmentError(where, f"query id {qid!r} is empty or contains spaces")
        if qid in seen:
            raise JudgmentError(where, f"query {text or image!r} (id {qid}) already listed at judgmentRatings[{seen[qid]}]")
        seen[qid] = i
        ratings = entry.get("ratings")
        if not isinstance(ratings, list):
            raise JudgmentError(where, "'ratings' must be a list of {docId, rating}")
        grades: dict[str, float] = {}
        for j, r in enumerate(ratings):
            rw = f"{where}.ratings[{j}]"
            if not isinstance(r, dict) or "docId" not in r or "rating" not in r:
                raise JudgmentError(rw, "must be an object with 'docId' and 'rating'")
            doc = str(r["docId"]).strip()
            if not doc:
                raise JudgmentError(rw, "empty docId")
            if isinstance(r["rating"], bool):
                raise JudgmentError(rw, f"rating {r['rating']!r} is not a number")
            g = _grade(str(r["rating"]), rw)
            if doc in grades and grades[doc] != g:
                raise JudgmentError(rw, f"doc {doc} rated twice ({grades[doc]} and {g})")
            grades[doc] = g
        queries.append(JudgedQuery(qid, text, (path.parent / image) if image else None, grades))
    return JudgmentSet(name or path.stem, tuple(queries))


# --- dispatch and writers -----------------------------------------------------------------

def load_judgments(path: str | Path, queries: str | Path | None = None) -> JudgmentSet:
    """Whatever ``path`` is: an SRW ``.json`` file, a folder with ``qrels.txt`` and
    ``queries.jsonl`` (or ``queries.tsv``), or a qrels file with ``queries`` (default: the
    ``queries.jsonl`` / ``queries.tsv`` beside it)."""
    path = Path(path)
    if path.is_dir():
        folder, qrels = path, path / QRELS_NAME
        if not qrels.is_file():
            raise JudgmentError(str(path), f"folder has no {QRELS_NAME}")
    elif path.suffix.lower() == ".json":
        return read_srw(path)
    elif path.is_file():
        folder, qrels = path.parent, path
    else:
        raise JudgmentError(str(path), "no such file or folder")
    if queries is None:
        for cand in (QUERIES_NAME, "queries.tsv"):
            if (folder / cand).is_file():
                queries = folder / cand
                break
        else:
            raise JudgmentError(str(qrels), f"no query file given and none ({QUERIES_NAME} or queries.tsv) beside it")
    return load_trec(qrels, queries, name=folder.name if path.is_dir() else None)


def _rel_image(image: Path | None, folder: Path) -> str | None:
    if image is None:
        return None
    try:
        return image.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(image.resolve())


def write_trec(jset: JudgmentSet, folder: str | Path) -> tuple[Path, Path]:
    """``qrels.txt`` and ``queries.jsonl`` in ``folder`` (image paths relative to it when inside it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    qrels, queries = folder / QRELS_NAME, folder / QUERIES_NAME
    with qrels.open("w", encoding="utf-8") as fq, queries.open("w", encoding="utf-8") as fj:
        for q in jset.queries:
            row: dict[str, Any] = {"id": q.id}
            if q.text:
                row["text"] = q.text
            if q.image is not None:
                row["image"] = _rel_image(q.image, folder)
            fj.write(json.dumps(row, ensure_ascii=False) + "\n")
            for doc, grade in q.grades.items():
                if any(c.isspace() for c in doc):
                    raise ValueError(f"doc id {doc!r} contains spaces; TREC qrels cannot hold it")
                fq.write(f"{q.id} 0 {doc} {grade:g}\n")
    return qrels, queries


def write_srw(jset: JudgmentSet, path: str | Path, description: str = "") -> int:
    """SRW import JSON for the text-only queries; returns how many queries with an image were left out.

    Only SRW's own keys are written (``query``, ``ratings``) so SRW accepts the file; SRW has
    no image queries, and a text+image query written as text alone would be a different query.
    Read back, the query ids are :func:`query_id_for` of the text, not the TREC ids.
    """
    path = Path(path)
    entries, skipped = [], 0
    for q in jset.queries:
        if q.image is not None:
            skipped += 1
            continue
        entries.append({"query": q.text,
                        "ratings": [{"docId": d, "rating": f"{g:.3f}"} for d, g in q.grades.items()]})
    body = {"name": jset.name, "description": description or f"{jset.name} judgments from cmsearch",
            "type": "IMPORT_JUDGMENT", "judgmentRatings": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    return skipped
