"""The retriever registry: everything the query builder knows about one kind of retriever, in one entry.

A retriever kind is the index field it searches (a name from :mod:`mappings.fields`), the
query vector it searches with, whether that field sits inside the nested image objects, the
default strength of boosts in its score units, the kinds of request it serves by default, and
where its best image ranks when a hit shows one.  Everything else is derived from that: which
request inputs make it runnable, the k-NN query it becomes, the nested-shortfall re-run, the
best-image probe after a hybrid search, and whether a verbose query drops it.

Adding a retriever is one :func:`register` call plus the mapping field it searches; profiles
can then name it like a shipped one.  Entries are frozen: the registry is read by many threads
at once (a shared ``Searcher``), so registering belongs at import time, before searching.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from mappings import fields

__all__ = ["RetrieverKind", "RETRIEVERS", "register", "unregister", "retriever", "retriever_names",
           "INPUT_TEXT", "INPUT_TEXT_VECTOR", "INPUT_IMAGE_VECTOR", "INPUT_IMAGE_FEATURE", "INPUTS",
           "VECTOR_TEXT", "VECTOR_IMAGE", "VECTOR_FEATURE", "VECTOR_FUSED", "QUERY_VECTORS",
           "REQUEST_TEXT", "REQUEST_IMAGE", "REQUEST_BOTH", "REQUEST_KINDS", "request_kind",
           "LEXICAL", "TEXT_KNN", "TEXT_IMAGE_KNN", "IMAGE_IMAGE_KNN", "IMAGE_TEXT_KNN", "FUSED_KNN"]

# names of a request's inputs (what ``Profile.active`` is asked about): the query's words, and
# its vectors; the text vector input is named for the field it searches
INPUT_TEXT = "text"
INPUT_TEXT_VECTOR = fields.TEXT_VECTOR
INPUT_IMAGE_VECTOR = "image_vector"
INPUT_IMAGE_FEATURE = "image_feature"
INPUTS = (INPUT_TEXT, INPUT_TEXT_VECTOR, INPUT_IMAGE_VECTOR, INPUT_IMAGE_FEATURE)

# the query vectors a k-NN retriever may search with: a ``QueryVectors`` attribute, or the
# fused point computed from the text and image vectors (``fused_query_vector``)
VECTOR_TEXT, VECTOR_IMAGE, VECTOR_FEATURE, VECTOR_FUSED = "text", "image", "image_feature", "fused"
QUERY_VECTORS: Mapping[str, tuple[str, ...]] = MappingProxyType({   # vector -> inputs, any one suffices
    VECTOR_TEXT: (INPUT_TEXT_VECTOR,),
    VECTOR_IMAGE: (INPUT_IMAGE_VECTOR,),
    VECTOR_FEATURE: (INPUT_IMAGE_FEATURE,),
    VECTOR_FUSED: (INPUT_TEXT_VECTOR, INPUT_IMAGE_VECTOR),
})

# the kinds of request a retriever may be limited to (``RetrieverSpec.requests``)
REQUEST_TEXT, REQUEST_IMAGE, REQUEST_BOTH = "text", "image", "text+image"
REQUEST_KINDS = (REQUEST_TEXT, REQUEST_IMAGE, REQUEST_BOTH)


def request_kind(inputs: set[str]) -> str | None:
    """``text``, ``image`` or ``text+image`` for a request's inputs (None for no inputs)."""
    text = bool(inputs & {INPUT_TEXT, INPUT_TEXT_VECTOR})
    image = bool(inputs & {INPUT_IMAGE_VECTOR, INPUT_IMAGE_FEATURE})
    return REQUEST_BOTH if text and image else REQUEST_TEXT if text else REQUEST_IMAGE if image else None


@dataclass(frozen=True)
class RetrieverKind:
    """One kind of retriever.

    - ``vector``: the query vector it searches with (``text``, ``image``, ``image_feature``,
      ``fused``); None for the lexical retriever, which searches with the query's words over
      the profile's ``lexical.fields``.
    - ``field``: the index field, inside ``images`` when ``nested`` (a product then scores
      as its best image, which comes back as an inner hit).
    - ``boost_scale``: the default factor from boost strengths to its score units (a BM25
      score is unbounded, a cosine score lies in [0, 1]).
    - ``requests``: the kinds of request it serves unless a profile says otherwise.
    - ``image_priority``: for a nested retriever, which one's best image a hit shows when
      several ran (lower first); the same order picks the best-image probe after a hybrid
      query, which drops its sub-queries' inner hits.
    """

    name: str
    field: str | None
    vector: str | None
    nested: bool = False
    boost_scale: float = 0.05
    requests: tuple[str, ...] = REQUEST_KINDS
    image_priority: int = 100
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"retriever name {self.name!r} must be letters, digits and '_'")
        if self.vector is None:
            if self.field is not None or self.nested:
                raise ValueError(f"retriever {self.name}: a lexical retriever (no vector) takes its fields "
                                 "from the profile, not a field of its own")
        else:
            if self.vector not in QUERY_VECTORS:
                raise ValueError(f"retriever {self.name}: vector {self.vector!r}; allowed: {list(QUERY_VECTORS)}")
            if not self.field:
                raise ValueError(f"retriever {self.name}: a k-NN retriever needs the index field it searches")
        bad = [r for r in self.requests if r not in REQUEST_KINDS]
        if bad or not self.requests:
            raise ValueError(f"retriever {self.name}: requests {list(self.requests)}; allowed: a non-empty "
                             f"subset of {list(REQUEST_KINDS)}")
        if self.boost_scale < 0:
            raise ValueError(f"retriever {self.name}: boost_scale must not be negative")

    @property
    def lexical(self) -> bool:
        return self.vector is None

    @property
    def needs(self) -> tuple[str, ...]:
        """The request inputs that make it runnable (any one suffices)."""
        return (INPUT_TEXT,) if self.vector is None else QUERY_VECTORS[self.vector]

    @property
    def text_vector_only(self) -> bool:
        """It searches with the query text's vector alone (left out of a verbose query's search)."""
        return self.vector == VECTOR_TEXT

    @property
    def field_path(self) -> str | None:
        """The field's full path in the index (``images.<field>`` when nested)."""
        if self.field is None:
            return None
        return fields.nested(self.field) if self.nested else self.field


_REGISTRY: dict[str, RetrieverKind] = {}
RETRIEVERS: Mapping[str, RetrieverKind] = MappingProxyType(_REGISTRY)   # read-only view, registration order


def register(kind: RetrieverKind, *, replace: bool = False) -> RetrieverKind:
    """Add a retriever kind; profiles can name it from then on.  A second entry of the same name is
    an error unless ``replace``."""
    if not isinstance(kind, RetrieverKind):
        raise TypeError("register() takes a RetrieverKind")
    if kind.name in _REGISTRY and not replace:
        raise ValueError(f"retriever {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a retriever kind (tests, plug-ins being unloaded)."""
    _REGISTRY.pop(name, None)


def retriever(name: str) -> RetrieverKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown retriever {name!r}; registered: {list(_REGISTRY)}") from None


def retriever_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


LEXICAL = register(RetrieverKind(
    "lexical", field=None, vector=None, boost_scale=2.0,
    description="multi_match over the tokenized text fields")).name
TEXT_KNN = register(RetrieverKind(
    "text_knn", field=fields.TEXT_VECTOR, vector=VECTOR_TEXT,
    description="query text vector -> product text vectors")).name
TEXT_IMAGE_KNN = register(RetrieverKind(
    "text_image_knn", field=fields.IMAGE_VECTOR, vector=VECTOR_TEXT, nested=True, image_priority=20,
    description="query text vector -> product image vectors (shared space)")).name
IMAGE_IMAGE_KNN = register(RetrieverKind(
    "image_image_knn", field=fields.IMAGE_FEATURE, vector=VECTOR_FEATURE, nested=True, image_priority=10,
    description="photo backbone feature -> product image features")).name
IMAGE_TEXT_KNN = register(RetrieverKind(
    "image_text_knn", field=fields.TEXT_VECTOR, vector=VECTOR_IMAGE,
    description="photo shared-space vector -> product text vectors")).name
FUSED_KNN = register(RetrieverKind(
    "fused_knn", field=fields.FUSED_VECTOR, vector=VECTOR_FUSED,
    description="text and/or photo -> fused product vectors")).name
