"""The catalog's record schema: one typed :class:`Product` per valid record, a clear reason otherwise.

The keys below are the *catalog's* column names (what a merchant writes, documented in
``SCHEMA.md``); they are not index field names, which only ``mappings.fields`` spells.

Validation reports every problem of a record at once ("price: expected a number, got 'abc';
title: missing"), so a merchant fixes a record in one go instead of one error per reload.
Limits (:class:`Limits`) exist where OpenSearch or the models would fail later and less
clearly: a ``_id`` is at most 512 bytes and a title of 100,000 characters is broken data rather
than a title.  An image list longer than ``max_images`` (which would exceed the nested-document
budget) is not a reason to lose the product: the first ``max_images`` are kept and the rest
are reported as left out.

CSV cells are all text, so the CSV form of a record is coerced: an empty cell is an absent
value, numbers are parsed, lists are ``|``-separated (or a JSON array), ``attributes`` may be a
JSON object.  JSON records must carry the documented JSON types.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Product", "InvalidRecord", "Limits", "validate", "product_id", "KEYS",
           "RELATION_KEYS", "LIST_SEPARATOR"]

# catalog keys (not index fields)
K_ID = "id"
K_TITLE = "title"
K_DESCRIPTION = "description"
K_BRAND = "brand"
K_CATEGORY = "category"
K_IMAGES = "images"
K_IMAGE = "image"            # accepted synonym: a single image
K_PRICE = "price"
K_RATING = "rating"
K_ATTRIBUTES = "attributes"
K_RELATIONS = "relations"
K_ACCESSORY_OF = "accessory_of"
K_RELATED = "related"
K_SERIES = "series"
RELATION_KEYS = (K_ACCESSORY_OF, K_RELATED, K_SERIES)
KEYS = (K_ID, K_TITLE, K_DESCRIPTION, K_BRAND, K_CATEGORY, K_IMAGES, K_IMAGE, K_PRICE, K_RATING,
        K_ATTRIBUTES, K_RELATIONS, *RELATION_KEYS)
LIST_SEPARATOR = "|"
CATEGORY_SEPARATOR = ">"
# what "a plain number" means for a numeric string: ASCII digits, one optional sign, point and
# exponent.  ``float()`` alone also takes "1_000", "nan", "inf" and full-width or Arabic-Indic
# digits, which are typos or other conventions, not prices.
# why an id or a CSV title holds a line break: a quote left open swallowed the lines after it
_OPEN_QUOTE = " (in a CSV file: a quote left open, which reads the lines after it into this cell)"
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class InvalidRecord(ValueError):
    """A record that does not fit the schema; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class Limits:
    """Sizes beyond which a record is rejected rather than indexed."""

    max_id_bytes: int = 512            # OpenSearch's own _id limit
    max_title_chars: int = 1_000
    max_description_chars: int = 50_000
    max_brand_chars: int = 200
    max_category_levels: int = 16
    max_category_chars: int = 200      # one level
    max_images: int = 64
    max_relation_values: int = 1_000
    max_relation_chars: int = 512      # one value


@dataclass(frozen=True)
class Product:
    """A valid catalog record, typed; text as written (normalization happens in enrich)."""

    id: str
    title: str
    description: str = ""
    brand: str = ""
    category: tuple[str, ...] = ()          # levels, top first
    images: tuple[str, ...] = ()            # as written: path, http(s) URL or data: URI
    # images past ``Limits.max_images``: not indexed, reported as left out (the product is kept)
    images_left_out: tuple[str, ...] = ()
    price: float | None = None
    rating: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    accessory_of: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    series: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    def canonical(self) -> dict[str, Any]:
        """A plain, key-sorted JSON-able form (content hashing, the rejects file)."""
        return {
            K_ID: self.id, K_TITLE: self.title, K_DESCRIPTION: self.description, K_BRAND: self.brand,
            K_CATEGORY: list(self.category), K_IMAGES: list(self.images), K_PRICE: self.price,
            K_RATING: self.rating, K_ATTRIBUTES: dict(self.attributes),
            K_RELATIONS: {K_ACCESSORY_OF: list(self.accessory_of), K_RELATED: list(self.related),
                          K_SERIES: list(self.series)},
        }


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any, n: int = 60) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return repr(text if len(text) <= n else text[:n] + "...")


def _absent(v: Any, csv_mode: bool) -> bool:
    return v is None or (csv_mode and isinstance(v, str) and not v.strip())


class _Checker:
    """Collects the problems of one record."""

    def __init__(self, csv_mode: bool, limits: Limits) -> None:
        self.csv = csv_mode
        self.limits = limits
        self.reasons: list[str] = []

    def fail(self, msg: str) -> None:
        self.reasons.append(msg)

    def text(self, key: str, v: Any, limit: int, required: bool = False) -> str:
        if _absent(v, self.csv):
            if required:
                self.fail(f"{key}: missing (required)")
            return ""
        if not isinstance(v, str):
            self.fail(f"{key}: expected a string, got {_typename(v)} {_short(v)}")
            return ""
        s = v.strip()
        if required and not s:
            self.fail(f"{key}: empty (required)")
        if len(s) > limit:
            self.fail(f"{key}: {len(s)} characters, over the limit of {limit}")
        return s

    def number(self, key: str, v: Any) -> float | None:
        if _absent(v, self.csv):
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            self.fail(f"{key}: expected a number, got {_typename(v)} {_short(v)}")
            return None
        if isinstance(v, str):
            # "12.5" in JSON is a string where a number belongs; accepted, since many exports
            # quote every value, but only when it reads as a plain number
            if not _PLAIN_NUMBER.fullmatch(v.strip()):
                self.fail(f"{key}: expected a number (plain ASCII digits with an optional sign, decimal "
                          f"point and exponent), got {_short(v)}")
                return None
            x = float(v.strip())
        else:
            try:
                x = float(v)
            except OverflowError:   # a JSON integer of hundreds of digits
                self.fail(f"{key}: expected a finite number, got an integer of {len(str(v))} digits")
                return None
        if not math.isfinite(x):
            self.fail(f"{key}: expected a finite number, got {_short(v)}")
            return None
        if x < 0:
            self.fail(f"{key}: must not be negative, got {x:g}")
            return None
        return x

    def strings(self, key: str, v: Any, *, max_values: int, max_chars: int,
                numbers: bool = True) -> tuple[str, ...]:
        """A list of strings; a single string is a one-item list (in CSV: ``a|b|c``).

        With ``numbers``, numbers count as their text (relation targets are often numeric ids).
        """
        if _absent(v, self.csv):
            return ()
        if isinstance(v, str):
            s = v.strip()
            if self.csv:
                if s.startswith("["):
                    try:
                        v = json.loads(s)
                    except json.JSONDecodeError:
                        self.fail(f"{key}: looks like a JSON list but is not valid JSON: {_short(s)}")
                        return ()
                else:
                    v = s.split(LIST_SEPARATOR)
            else:
                v = [s]
        if numbers and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [str(v)]
        if not isinstance(v, (list, tuple)):
            self.fail(f"{key}: expected a string or a list of strings, got {_typename(v)} {_short(v)}")
            return ()
        out: list[str] = []
        for i, item in enumerate(v):
            if numbers and isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]: expected a string, got {_typename(item)} {_short(item)}")
                continue
            item = item.strip()
            if not item:
                continue
            if len(item) > max_chars:
                self.fail(f"{key}[{i}]: {len(item)} characters, over the limit of {max_chars}")
                continue
            if item not in out:
                out.append(item)
        if len(out) > max_values:
            self.fail(f"{key}: {len(out)} values, over the limit of {max_values}")
        return tuple(out)


def product_id(data: Mapping[str, Any], *, csv_mode: bool = False, limits: Limits = Limits()) -> str | None:
    """The record's id as the index's ``_id`` will be, or None when it has no usable id."""
    c = _Checker(csv_mode, limits)
    pid = _id(c, data.get(K_ID))
    return None if c.reasons else pid


def _id(c: _Checker, v: Any) -> str:
    if _absent(v, c.csv):
        c.fail(f"{K_ID}: missing (required)")
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        c.fail(f"{K_ID}: expected a string or an integer, got {_typename(v)} {_short(v)}")
        return ""
    pid = str(v).strip()
    if not pid:
        c.fail(f"{K_ID}: empty (required)")
    elif "\n" in pid or "\r" in pid:
        c.fail(f"{K_ID}: contains a line break{_OPEN_QUOTE if c.csv else ''}: {_short(pid)}")
    elif len(pid.encode("utf-8")) > c.limits.max_id_bytes:
        c.fail(f"{K_ID}: {len(pid.encode('utf-8'))} bytes, over OpenSearch's limit of {c.limits.max_id_bytes}")
    return pid


def _category(c: _Checker, v: Any) -> tuple[str, ...]:
    """"A > B > C" or ["A", "B", "C"] -> ("A", "B", "C")."""
    if _absent(v, c.csv):
        return ()
    if isinstance(v, str):
        parts = v.split(CATEGORY_SEPARATOR)
    elif isinstance(v, (list, tuple)):
        parts = []
        for i, p in enumerate(v):
            if not isinstance(p, str):
                c.fail(f"{K_CATEGORY}[{i}]: expected a string, got {_typename(p)} {_short(p)}")
                return ()
            if CATEGORY_SEPARATOR in p:
                c.fail(f"{K_CATEGORY}[{i}]: a level name must not contain {CATEGORY_SEPARATOR!r}: {_short(p)}")
                return ()
            parts.append(p)
    else:
        c.fail(f"{K_CATEGORY}: expected a path string or a list of strings, got {_typename(v)} {_short(v)}")
        return ()
    levels = tuple(" ".join(p.split()) for p in parts)
    if any(not lv for lv in levels):
        c.fail(f"{K_CATEGORY}: empty level in {_short(v)}")
        return ()
    if len(levels) > c.limits.max_category_levels:
        c.fail(f"{K_CATEGORY}: {len(levels)} levels, over the limit of {c.limits.max_category_levels}")
    for lv in levels:
        if len(lv) > c.limits.max_category_chars:
            c.fail(f"{K_CATEGORY}: a level of {len(lv)} characters, over the limit of {c.limits.max_category_chars}")
            break
    return levels


def _images(c: _Checker, v: Any) -> tuple[str, ...]:
    """Every image of the record (deduplicated, in order); the caller keeps the first ``max_images``."""
    if _absent(v, c.csv):
        return ()
    if isinstance(v, dict):
        v = [v]
    if isinstance(v, (list, tuple)):
        items = []
        for i, item in enumerate(v):
            if isinstance(item, dict):  # {"url": ...} / {"path": ...}
                item = item.get("url") or item.get("path")
                if item is None:
                    c.fail(f"{K_IMAGES}[{i}]: an image object needs 'url' or 'path'")
                    continue
            items.append(item)
        v = items
    # data: URIs contain commas and may contain '|', so a CSV cell holding one is one image
    if c.csv and isinstance(v, str) and v.strip().startswith("data:"):
        v = [v]
    return c.strings(K_IMAGES, v, max_values=1 << 62, max_chars=1 << 62, numbers=False)


def _attributes(c: _Checker, v: Any) -> dict[str, Any]:
    if _absent(v, c.csv):
        return {}
    if c.csv and isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            c.fail(f"{K_ATTRIBUTES}: expected a JSON object, got {_short(v)}")
            return {}
    if not isinstance(v, dict):
        c.fail(f"{K_ATTRIBUTES}: expected an object, got {_typename(v)} {_short(v)}")
        return {}
    return dict(v)


def validate(data: Mapping[str, Any], *, csv_mode: bool = False, limits: Limits = Limits()) -> Product:
    """A :class:`Product` from one parsed record, or :class:`InvalidRecord` with every reason.

    Keys the schema does not know go under ``attributes`` (an explicit ``attributes`` value
    wins over a column of the same name).
    """
    c = _Checker(csv_mode, limits)
    pid = _id(c, data.get(K_ID))
    title = c.text(K_TITLE, data.get(K_TITLE), limits.max_title_chars, required=True)
    if csv_mode and ("\n" in title or "\r" in title):   # a title is one line; a CSV cell over lines is a stray quote
        c.fail(f"{K_TITLE}: contains a line break{_OPEN_QUOTE}: {_short(title)}")
    description = c.text(K_DESCRIPTION, data.get(K_DESCRIPTION), limits.max_description_chars)
    brand = c.text(K_BRAND, data.get(K_BRAND), limits.max_brand_chars)
    category = _category(c, data.get(K_CATEGORY))
    images = _images(c, data.get(K_IMAGES))
    if not _absent(data.get(K_IMAGE), csv_mode):
        images = tuple(dict.fromkeys((*images, *_images(c, data.get(K_IMAGE)))))
    # a product with hundreds of photos is still a product: index it with the first ones (the
    # nested-document budget and the encoder batch are sized for max_images), report the rest
    images, images_left_out = images[:limits.max_images], images[limits.max_images:]
    price = c.number(K_PRICE, data.get(K_PRICE))
    rating = c.number(K_RATING, data.get(K_RATING))

    relations: dict[str, Any] = {}
    rel = data.get(K_RELATIONS)
    if not _absent(rel, csv_mode):
        if csv_mode and isinstance(rel, str):
            try:
                rel = json.loads(rel)
            except json.JSONDecodeError:
                pass
        if not isinstance(rel, dict):
            c.fail(f"{K_RELATIONS}: expected an object with {', '.join(RELATION_KEYS)}, got {_typename(rel)} {_short(rel)}")
        else:
            unknown = sorted(set(rel) - set(RELATION_KEYS))
            if unknown:
                c.fail(f"{K_RELATIONS}: unknown key(s) {unknown}; allowed: {list(RELATION_KEYS)}")
            relations.update(rel)
    for key in RELATION_KEYS:
        if not _absent(data.get(key), csv_mode):
            relations[key] = data.get(key)
    rel_values = {key: c.strings(f"{K_RELATIONS}.{key}" if key not in data else key, relations.get(key),
                                 max_values=limits.max_relation_values, max_chars=limits.max_relation_chars)
                  for key in RELATION_KEYS}

    attributes = {k: v for k, v in data.items()
                  if k not in KEYS and not _absent(v, csv_mode) and isinstance(k, str)}
    attributes.update(_attributes(c, data.get(K_ATTRIBUTES)))

    if c.reasons:
        raise InvalidRecord(c.reasons)
    return Product(id=pid, title=title, description=description, brand=brand, category=category,
                   images=images, images_left_out=images_left_out, price=price, rating=rating, attributes=attributes,
                   accessory_of=rel_values[K_ACCESSORY_OF], related=rel_values[K_RELATED],
                   series=rel_values[K_SERIES])
