"""Streaming a product catalog (JSONL or CSV) record by record, without ever holding the file.

A catalog may be larger than memory and may be broken in any line, so the reader:

- reads bytes, one physical line at a time, and decodes each line on its own: one line of
  invalid UTF-8 becomes one unreadable record with its line number, not a failed load;
- tolerates a UTF-8 byte-order mark at the start of the file (spreadsheet exports add one);
- never raises for a bad record: it yields a :class:`SourceRecord` whose ``error`` says why, so
  the pipeline can put it in the rejects file and go on;
- caps one record's size (``max_record_bytes``), reading past an over-long line in chunks
  instead of loading it (a missing newline must not pull gigabytes into one string);
- reports each record's first line number (for the rejects file) and the byte offset right
  after it (the resume point a checkpoint stores), and can start reading at such an offset.

Only whole-file problems raise :class:`CatalogError` (the file is missing, a CSV has no usable
header), because then no record can be read at all.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

__all__ = ["Catalog", "CatalogError", "SourceRecord", "FORMATS", "DEFAULT_MAX_RECORD_BYTES"]

BOM = b"\xef\xbb\xbf"
FORMATS = ("jsonl", "csv", "tsv")
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
_READ_CHUNK = 1024 * 1024


class CatalogError(ValueError):
    """The catalog as a whole cannot be read (missing file, unusable CSV header, unknown format)."""


@dataclass(frozen=True)
class SourceRecord:
    """One record as read from the catalog.

    ``data`` is the parsed record (a JSON object, or a CSV row as ``{column: text}``) or None
    when the record could not be read; then ``error`` says why and ``raw`` holds the source
    text (invalid bytes written as ``\\xNN`` escapes, so nothing is lost in the rejects file).
    ``end_offset`` is the byte offset just after the record and ``end_line`` its last line:
    ``records(end_offset, end_line)`` continues with the next record.
    """

    line: int
    end_offset: int
    data: dict[str, Any] | None = None
    error: str | None = None
    raw: str | None = None
    end_line: int = 0   # last physical line of the record (a CSV row may span several)

    def __post_init__(self) -> None:
        if self.end_line < self.line:
            object.__setattr__(self, "end_line", self.line)

    @property
    def ok(self) -> bool:
        return self.error is None


def _excerpt(raw: bytes, limit: int = 200_000) -> str:
    """The source bytes as text for the rejects file; invalid UTF-8 becomes ``\\xNN`` escapes."""
    text = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    if len(text) > limit:
        return text[:limit] + f"... [{len(text) - limit} more characters]"
    return text


def _utf8_error(exc: UnicodeDecodeError) -> str:
    return f"invalid UTF-8 at byte {exc.start + 1} of the line (byte 0x{exc.object[exc.start]:02x})"


class Catalog:
    """A catalog file and how to read it.

    ``fmt`` is ``jsonl``, ``csv`` or ``tsv``; by default it comes from the file extension
    (``.jsonl``/``.ndjson``/``.json`` are read as JSON lines).
    """

    def __init__(self, path: str | Path, fmt: str | None = None, *,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CatalogError(f"catalog not found: {self.path}")
        if fmt is None:
            fmt = _EXTENSIONS.get(self.path.suffix.lower())
            if fmt is None:
                raise CatalogError(f"cannot tell the format of {self.path.name} from its extension; "
                                   f"name it .jsonl or .csv, or pass the format ({', '.join(FORMATS)})")
        if fmt not in FORMATS:
            raise CatalogError(f"unknown catalog format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.max_record_bytes = max_record_bytes
        if fmt != "jsonl" and csv.field_size_limit() < max_record_bytes:
            # the csv module's own cap (128 KiB per field) would refuse a long description
            csv.field_size_limit(max_record_bytes)
        self._header: list[str] | None = None

    @property
    def base_dir(self) -> Path:
        """Relative image paths in the catalog are relative to the catalog's folder."""
        return self.path.resolve().parent

    def fingerprint(self) -> dict[str, Any]:
        """Size and a hash of the first MiB: enough to notice that a checkpoint belongs to another file.

        (Hashing the whole file would read it once more; a catalog replaced by one of the same
        size and the same first megabyte is not told apart, which the checkpoint docs say.)
        """
        st = self.path.stat()
        h = hashlib.sha256()
        with self.path.open("rb") as fh:
            h.update(fh.read(1024 * 1024))
        return {"path": str(self.path.resolve()), "size": st.st_size, "head_sha256": h.hexdigest()}

    # -- reading -----------------------------------------------------------------------------
    def records(self, start_offset: int = 0, start_line: int = 0) -> Iterator[SourceRecord]:
        """Every record from ``start_offset`` (a previous record's ``end_offset``) to the end.

        ``start_line`` is the number of physical lines before ``start_offset``, so line numbers
        stay those of the file.  Blank lines are not records and are skipped.
        """
        with self.path.open("rb") as fh:
            if self.fmt == "jsonl":
                yield from self._jsonl(fh, start_offset, start_line)
            else:
                yield from self._csv(fh, start_offset, start_line)

    def _lines(self, fh: BinaryIO, offset: int, line_no: int) -> Iterator[tuple[int, int, bytes, bool]]:
        """(line number, end offset, bytes, too_long) per physical line, BOM removed."""
        fh.seek(offset)
        limit = self.max_record_bytes
        while True:
            chunk = fh.readline(limit + 1)
            if not chunk:
                return
            line_no += 1
            too_long = False
            if len(chunk) > limit and not chunk.endswith(b"\n"):
                too_long = True
                head = chunk
                while chunk and not chunk.endswith(b"\n"):  # skip the rest without keeping it
                    chunk = fh.readline(_READ_CHUNK)
                chunk = head[:4096]
            if offset == 0 and chunk.startswith(BOM):
                chunk = chunk[len(BOM):]
            offset = fh.tell()
            yield line_no, offset, chunk, too_long

    def _jsonl(self, fh: BinaryIO, offset: int, line_no: int) -> Iterator[SourceRecord]:
        for line_no, end, raw, too_long in self._lines(fh, offset, line_no):
            if too_long:
                yield SourceRecord(line_no, end, error=f"record is longer than {self.max_record_bytes} bytes",
                                   raw=_excerpt(raw, 4096))
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield SourceRecord(line_no, end, error=_utf8_error(exc), raw=_excerpt(raw))
                continue
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                # some of json's messages end in "at" ("Invalid control character at")
                msg = msg[:-3] if msg.endswith(" at") else msg
                where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                yield SourceRecord(line_no, end, error=f"malformed JSON: {msg}{where}", raw=_excerpt(raw))
                continue
            except ValueError:  # an integer literal over Python's digit limit (4300 digits)
                yield SourceRecord(line_no, end, error="malformed JSON: a number with more digits than can be read",
                                   raw=_excerpt(raw))
                continue
            if not isinstance(data, dict):
                yield SourceRecord(line_no, end, error=f"malformed JSON: a record must be a JSON object, "
                                                       f"not {type(data).__name__}", raw=_excerpt(raw))
                continue
            yield SourceRecord(line_no, end, data=data)

    # -- CSV ---------------------------------------------------------------------------------
    def header(self) -> list[str]:
        """The CSV column names (first row), checked once."""
        if self._header is None:
            with self.path.open("rb") as fh:
                lines = self._lines(fh, 0, 0)
                first = next((rec for rec in lines if rec[2].strip()), None)
                if first is None:
                    raise CatalogError(f"{self.path.name}: the CSV file is empty (no header row)")
                _, _, raw, too_long = first
                if too_long:
                    raise CatalogError(f"{self.path.name}: the CSV header row is longer than "
                                       f"{self.max_record_bytes} bytes")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CatalogError(f"{self.path.name}: the CSV header is not UTF-8 ({_utf8_error(exc)})") from None
                try:
                    row = next(csv.reader([text], delimiter=self._delimiter, strict=True))
                except csv.Error as exc:
                    raise CatalogError(f"{self.path.name}: the CSV header cannot be parsed ({exc})") from None
            names = [c.strip() for c in row]
            if any(not c for c in names):
                raise CatalogError(f"{self.path.name}: the CSV header has an empty column name: {row!r}")
            dup = sorted({c for c in names if names.count(c) > 1})
            if dup:
                raise CatalogError(f"{self.path.name}: the CSV header repeats column(s) {dup}")
            self._header = names
        return self._header

    @property
    def _delimiter(self) -> str:
        return "\t" if self.fmt == "tsv" else ","

    def _csv(self, fh: BinaryIO, offset: int, line_no: int) -> Iterator[SourceRecord]:
        """CSV rows; a row over several lines that does not parse is read again from its second line.

        A quote left open (``p3,"bad title,3``) makes the csv module read the following lines
        as the rest of that cell, until a quote closes it or the file ends.  Rejecting that one
        "row" would lose every valid row it swallowed, unreported.  So when a row spanning
        several physical lines fails (a csv error, or the wrong number of fields), only its first
        line is rejected, with its text, and parsing starts again on the line after it: each
        line the open quote swallowed is read as a row of its own, indexed or rejected with its
        own line number.
        """
        header = self.header()
        header_pending = offset == 0
        while True:
            restart = yield from self._csv_rows(fh, offset, line_no, header, header_pending)
            if restart is None:
                return
            offset, line_no = restart
            header_pending = False

    def _csv_rows(self, fh: BinaryIO, offset: int, line_no: int, header: list[str],
                  header_pending: bool) -> Iterator[SourceRecord]:
        """Rows from ``offset`` until the end (returns None) or a multi-line row fails (returns
        the offset and line number to parse again from: the end of that row's first line)."""
        state: dict[str, Any] = {"offset": offset, "line": line_no, "bad_utf8": None, "too_long": False,
                                 "first": None}
        lines = self._lines(fh, offset, line_no)

        def text_lines() -> Iterator[str]:
            # csv.reader pulls physical lines from here one row at a time, so after each row
            # ``state`` holds the offset and line number just past that row, and ``first`` the
            # row's first line (number, end offset, bytes)
            for no, end, raw, too_long in lines:
                state["offset"], state["line"] = end, no
                if state["first"] is None:
                    state["first"] = (no, end, raw)
                if too_long:
                    state["too_long"] = True
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if state["bad_utf8"] is None:
                        state["bad_utf8"] = _utf8_error(exc)
                    yield raw.decode("utf-8", errors="backslashreplace")

        def resync(problem: str) -> SourceRecord:
            no, end, raw = state["first"]
            last = state["line"]
            span = f"lines {no} to the end of the file" if state["eof"] else f"lines {no}-{last}"
            return SourceRecord(no, end, error=f"malformed CSV row: {problem} in {span} read as one row (a quote "
                                               f"left open on line {no}?); only line {no} is rejected, the lines "
                                               "after it are read again as rows of their own",
                                raw=_excerpt(raw), end_line=no)

        reader = csv.reader(text_lines(), delimiter=self._delimiter, strict=True)
        while True:
            first_line = state["line"] + 1
            state["first"], state["eof"] = None, False
            try:
                row = next(reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                if state["first"] is None:   # nothing was read (cannot happen with csv's errors)
                    return None
                if state["line"] > state["first"][0]:
                    state["eof"] = str(exc) == "unexpected end of data"
                    yield resync(str(exc))
                    return state["first"][1], state["first"][0]
                # one line: reject it and carry on with a fresh parser (the csv module cannot go
                # on after some errors, e.g. an unterminated quote at the end of the file)
                no, end, raw = state["first"]
                yield SourceRecord(no, end, error=f"malformed CSV row: {exc}", raw=_excerpt(raw), end_line=no)
                reader = csv.reader(text_lines(), delimiter=self._delimiter, strict=True)
                state["bad_utf8"], state["too_long"] = None, False
                continue
            bad_utf8, too_long = state["bad_utf8"], state["too_long"]
            state["bad_utf8"], state["too_long"] = None, False
            if header_pending:
                if any(c.strip() for c in row):
                    header_pending = False
                continue
            if not any(c.strip() for c in row):
                continue
            end, last = state["offset"], state["line"]
            # the row as written when it is one line; a multi-line row as the csv module read it
            raw = _excerpt(state["first"][2]) if last == first_line else _csv_raw(row, self._delimiter)
            if too_long:
                yield SourceRecord(first_line, end, error=f"record is longer than {self.max_record_bytes} bytes",
                                   raw=raw[:4096], end_line=last)
            elif len(row) != len(header) and last > first_line:
                yield resync(f"{len(row)} fields, the header has {len(header)}")
                return state["first"][1], state["first"][0]
            elif bad_utf8:
                yield SourceRecord(first_line, end, error=bad_utf8, raw=raw, end_line=last)
            elif len(row) != len(header):
                yield SourceRecord(first_line, end,
                                   error=f"malformed CSV row: {len(row)} fields, the header has {len(header)}",
                                   raw=raw, end_line=last)
            else:
                yield SourceRecord(first_line, end, data=dict(zip(header, row)), end_line=last)

    def count_hint(self) -> int:
        """File size in bytes (progress before the first pass knows the record count)."""
        return os.path.getsize(self.path)


def _csv_raw(row: list[str], delimiter: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(row)
    return buf.getvalue()
