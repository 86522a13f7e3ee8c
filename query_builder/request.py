"""The typed search request: what a shopper asked for, validated before anything is built.

Bad input fails here, early and with a message a backend can show: no text and
no image, an unknown filter, an impossible price range, a page out of bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields as dc_fields, replace
from pathlib import Path
from typing import Any, Mapping

from mappings import fields

from .dsl import vector_tuple

__all__ = ["RequestError", "NumberRange", "Filters", "QueryImage", "QueryVectors", "SearchRequest",
           "FACETS", "MAX_PAGE_SIZE", "MAX_RESULT_WINDOW"]

# facet names: the brand and price facets are named for their fields; "category" covers every level
CATEGORY_FACET = "category"
FACETS = (fields.BRAND, CATEGORY_FACET, fields.PRICE)
MAX_PAGE_SIZE = 100
MAX_RESULT_WINDOW = 1000


class RequestError(ValueError):
    """The request cannot be searched as given; the message says why and what is allowed."""


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise RequestError(f"filter '{what}' takes a string or a list of strings, got {type(value).__name__}")
    out = []
    for v in value:
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise RequestError(f"filter '{what}' takes strings, got {v!r}")
        s = str(v).strip()
        if s:
            out.append(s)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class NumberRange:
    """An inclusive numeric range; either end may be open."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        for end in (self.min, self.max):
            if end is not None and (not isinstance(end, (int, float)) or isinstance(end, bool)
                                    or not math.isfinite(end)):
                raise RequestError(f"range ends must be finite numbers, got {end!r}")
        if self.min is None and self.max is None:
            raise RequestError("a range needs a min, a max, or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise RequestError(f"range min {self.min} is above max {self.max}")

    @classmethod
    def parse(cls, value: Any, what: str) -> "NumberRange":
        """From ``{"min": a, "max": b}``, ``[a, b]`` (``None`` for an open end) or ``"a-b"``."""
        try:
            if isinstance(value, NumberRange):
                return value
            if isinstance(value, Mapping):
                unknown = set(value) - {"min", "max"}
                if unknown:
                    raise RequestError(f"filter '{what}' takes 'min' and 'max', not {sorted(unknown)}")
                return cls(_num(value.get("min")), _num(value.get("max")))
            if isinstance(value, (list, tuple)) and len(value) == 2:
                return cls(_num(value[0]), _num(value[1]))
            if isinstance(value, str) and "-" in value:
                lo, hi = value.split("-", 1)
                return cls(_num(lo.strip() or None), _num(hi.strip() or None))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RequestError):
                raise
            raise RequestError(f"filter '{what}': {exc}") from None
        raise RequestError(f"filter '{what}' takes {{'min': .., 'max': ..}}, [min, max] or 'min-max'; got {value!r}")


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise RequestError(f"not a number: {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise RequestError(f"not a number: {v!r}") from None


@dataclass(frozen=True)
class Filters:
    """Hard constraints. Every one is applied inside every retriever (kNN included).

    Names are the keys of :data:`mappings.fields.FILTERABLE`; anything else is
    rejected with the list of allowed names.  Values within one name are OR-ed,
    different names are AND-ed; attributes (``"key=value"``) AND across keys
    and OR within a key.
    """

    brand: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    price: NumberRange | None = None
    rating: NumberRange | None = None
    attribute: tuple[str, ...] = ()
    id: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _list_filters():
            object.__setattr__(self, name, _strings(getattr(self, name), name))
        for name in _range_filters():
            value = getattr(self, name)
            if value is not None and not isinstance(value, NumberRange):
                object.__setattr__(self, name, NumberRange.parse(value, name))
        for a in self.attribute:
            key, sep, value = a.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise RequestError(f"attribute filter {a!r} must look like 'key=value'")

    @classmethod
    def allowed(cls) -> tuple[str, ...]:
        return tuple(fields.FILTERABLE)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Filters":
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise RequestError("filters must be an object of name -> value")
        known = {f.name for f in dc_fields(cls)}
        assert known == set(fields.FILTERABLE), "Filters and mappings.fields.FILTERABLE disagree"
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"unknown filter field(s) {unknown}; allowed: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if value is None:
                continue
            if name in _range_filters():
                kwargs[name] = NumberRange.parse(value, name)
            else:
                kwargs[name] = _strings(value, name)
        return cls(**kwargs)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in dc_fields(self))


def _range_filters() -> tuple[str, ...]:
    return tuple(f.name for f in dc_fields(Filters) if "NumberRange" in str(f.type))


def _list_filters() -> tuple[str, ...]:
    return tuple(f.name for f in dc_fields(Filters) if str(f.type).startswith("tuple"))


@dataclass(frozen=True)
class QueryImage:
    """A query photo as encoded bytes (JPEG, PNG, ...); decoding happens in the encode step."""

    data: bytes
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray)) or not self.data:
            raise RequestError(f"query image {self.name or ''} is empty".replace("  ", " "))
        object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def from_path(cls, path: str | Path) -> "QueryImage":
        p = Path(path)
        try:
            return cls(p.read_bytes(), name=str(p))
        except OSError as exc:
            raise RequestError(f"cannot read query image {p}: {exc.strerror or exc}") from None

    def __repr__(self) -> str:
        return f"QueryImage(name={self.name!r}, bytes={len(self.data)})"


@dataclass(frozen=True)
class QueryVectors:
    """Precomputed query vectors, for a backend that encodes elsewhere.

    - ``text``: the query text in the shared space (e5 *query* embedding).
    - ``image``: the query photo projected into the shared space.
    - ``image_feature``: the raw backbone feature of the photo (image -> image search).
    """

    text: tuple[float, ...] | None = None
    image: tuple[float, ...] | None = None
    image_feature: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("text", "image", "image_feature"):
            v = getattr(self, name)
            if v is not None:
                try:
                    t = vector_tuple(v)
                except (TypeError, ValueError) as exc:
                    raise RequestError(f"query vector '{name}': {exc}") from None
                if not t or not all(math.isfinite(x) for x in t):
                    raise RequestError(f"query vector '{name}' must be a non-empty list of finite numbers")
                object.__setattr__(self, name, t)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.text, self.image, self.image_feature))

    def merged(self, other: "QueryVectors | None") -> "QueryVectors":
        """These vectors, with gaps filled from ``other``."""
        if other is None:
            return self
        return QueryVectors(text=self.text if self.text is not None else other.text,
                            image=self.image if self.image is not None else other.image,
                            image_feature=self.image_feature if self.image_feature is not None
                            else other.image_feature)

    def __repr__(self) -> str:
        dims = {n: len(v) for n in ("text", "image", "image_feature") if (v := getattr(self, n)) is not None}
        return f"QueryVectors({dims})"


def _as_image(x: Any) -> QueryImage:
    if isinstance(x, QueryImage):
        return x
    if isinstance(x, (bytes, bytearray)):
        return QueryImage(bytes(x))
    return QueryImage.from_path(x)


@dataclass(frozen=True)
class SearchRequest:
    """One search: text and/or photo(s) (or their precomputed vectors), filters, facets, page.

    ``image_categories`` (the image classifier's ``(category, probability)``
    pairs) and ``image_text`` (OCR of the photo) are normally filled by the
    encode step, but a backend may pass its own.  ``context_product_ids`` are
    products the shopper is looking at; products related to them get a small lift.
    """

    text: str | None = None
    images: tuple[QueryImage, ...] = ()
    vectors: QueryVectors | None = None
    image_categories: tuple[tuple[str, float], ...] = ()
    image_text: str = ""
    filters: Filters = field(default_factory=Filters)
    facets: tuple[str, ...] = ()
    offset: int = 0
    size: int = 10
    explain: bool = False
    context_product_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise RequestError(f"query text must be a string, got {type(self.text).__name__}")
        images = self.images
        if isinstance(images, QueryImage):
            images = (images,)
        object.__setattr__(self, _IMAGES_ARG, tuple(images))
        if isinstance(self.filters, Mapping):
            object.__setattr__(self, "filters", Filters.from_dict(self.filters))
        cats = []
        for item in self.image_categories:
            try:
                label, prob = item
                cats.append((str(label), float(prob)))
            except (TypeError, ValueError):
                raise RequestError(f"image_categories holds (category, probability) pairs, got {item!r}") from None
        object.__setattr__(self, "image_categories", tuple(cats))
        object.__setattr__(self, "context_product_ids", _strings(self.context_product_ids, "context_product_ids"))
        facets = tuple(dict.fromkeys(self.facets))
        bad = [f for f in facets if f not in FACETS]
        if bad:
            raise RequestError(f"unknown facet(s) {bad}; allowed: {list(FACETS)}")
        object.__setattr__(self, "facets", facets)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_PAGE_SIZE:
            raise RequestError(f"size must be an integer from 0 to {MAX_PAGE_SIZE}, got {self.size!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise RequestError(f"offset must be a non-negative integer, got {self.offset!r}")
        if self.offset + self.size > MAX_RESULT_WINDOW:
            raise RequestError(f"offset + size must stay within {MAX_RESULT_WINDOW}, got {self.offset + self.size}")
        if not (self.has_text or self.has_image):
            raise RequestError("a search needs query text, a query image, or precomputed query vectors")

    @property
    def has_text(self) -> bool:
        return bool(self.text and self.text.strip()) or bool(self.vectors and self.vectors.text is not None)

    @property
    def has_image(self) -> bool:
        return bool(self.images) or bool(self.vectors and (self.vectors.image is not None
                                                          or self.vectors.image_feature is not None))

    def with_(self, **changes: Any) -> "SearchRequest":
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchRequest":
        """From JSON-like data (a backend's request): unknown keys are rejected."""
        known = {f.name for f in dc_fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"unknown request field(s) {unknown}; allowed: {sorted(known)}")
        kw = dict(data)
        if "filters" in kw:
            kw["filters"] = Filters.from_dict(kw["filters"])
        if "vectors" in kw and isinstance(kw["vectors"], Mapping):
            kw["vectors"] = QueryVectors(**kw["vectors"])
        images = kw.get(_IMAGES_ARG)
        if images is not None:
            if isinstance(images, (str, Path, bytes, QueryImage)):
                images = [images]
            kw[_IMAGES_ARG] = tuple(_as_image(i) for i in images)
        for name in ("facets", "context_product_ids", "image_categories"):
            if name in kw and kw[name] is not None:
                kw[name] = tuple(tuple(x) if isinstance(x, list) else x for x in kw[name])
        return cls(**kw)


_IMAGES_ARG = [f.name for f in dc_fields(SearchRequest) if "QueryImage" in str(f.type)][0]

