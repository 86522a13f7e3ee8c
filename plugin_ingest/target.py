"""The index a load writes to: created or checked before the load, merged after it.

Also the tokenizer of the load, since its dictionary takes the index's own brand and category
vocabulary into account when the index already holds products (one segmentation for the
whole index).
"""
from __future__ import annotations

from typing import Any, Callable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from analysis import AliasTable, Tokenizer, Vocabulary, normalize_brand
from engine.layout import index_layout
from engine.vocabulary import read_vocabulary
from mappings import MappingError, VectorOptions

from .enrich import build_vocabulary
from .load_options import IngestError, IngestOptions
from .report import StageTimes
from .survey import Survey

__all__ = ["prepare_index", "index_vectors", "force_merge", "load_tokenizer"]


def prepare_index(client: OpenSearch, o: IngestOptions, space: Any, log: Callable[[str], None]) -> bool:
    """Create / check the index for ``space`` (its ``dims`` and ``identity``, recorded in the index's
    ``_meta`` on creation and compared on a check); True when it existed before (so unchanged
    products may be there)."""
    from plugin_ingest.index_admin import IndexExistsError, check_index, create_product_index

    exists = bool(client.indices.exists(index=o.index))
    if o.recreate or (not exists and o.create):
        try:
            layout = index_layout(client, o.shards, o.replicas)
            if layout.warning:
                log(f"warning: {layout.warning}")
            create_product_index(client, o.index, space.dims, recreate=o.recreate, shards=layout.shards,
                                 replicas=layout.replicas, space=space.identity, vectors=o.vectors)
        except IndexExistsError as exc:  # a concurrent creation
            raise IngestError(str(exc)) from None
        log(f"created index {o.index} ({layout.describe()}; {(o.vectors or VectorOptions()).describe()})")
        return False
    if not exists:
        raise IngestError(f"index {o.index!r} does not exist; pass --create to create it from the "
                          f"product mapping, or create it with `cmsearch index create {o.index}`")
    try:
        problems = check_index(client, o.index, space.dims, space=space.identity)
        recorded = index_vectors(client, o.index)
    except MappingError as exc:   # an unreadable _meta: say which index, not a traceback
        raise IngestError(f"index {o.index!r}: {exc}") from None
    if problems:
        raise IngestError(f"index {o.index!r} does not fit these models: " + "; ".join(problems)
                          + " (use --recreate to rebuild it)")
    if o.vectors is not None and o.vectors != recorded:
        log(f"note: {o.index} keeps the vector options it was created with ({recorded.describe()}); "
            "they apply when an index is created")
    return True


def index_vectors(client: OpenSearch, index: str) -> VectorOptions:
    """How ``index`` stores its vectors, as its mapping records (what documents may carry)."""
    mapping = client.indices.get_mapping(index=index)
    return VectorOptions.from_mapping((mapping.get(index) or next(iter(mapping.values()), {})).get("mappings", {}))


def force_merge(client: OpenSearch, index: str, times: StageTimes, notes: list[str], *,
                redact: Callable[[str], str], log: Callable[[str], None]) -> None:
    """Merge into one segment: k-NN search walks one HNSW graph per segment."""
    log(f"merging {index} into one segment")
    with times.measure("merge"):
        try:
            client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=3600)
            client.indices.refresh(index=index)
        except TransportError as exc:
            # the load itself is complete; a slower index is not a failed load
            notes.append(redact(f"force merge of {index} failed ({exc.status_code}: {exc.error}); "
                                "search works, k-NN is slower until segments merge"))


def load_tokenizer(sv: Survey, aliases: AliasTable | None, client: OpenSearch | None, index: str,
                   index_existed: bool) -> Tokenizer:
    """A tokenizer whose dictionary holds every brand and category of the catalog (and of the index)."""
    index_vocab = read_vocabulary(client, index) if index_existed and client is not None else None
    brands = {normalize_brand(b, aliases) for b in sv.brands}
    vocab = build_vocabulary(brands, sv.category_paths, aliases, index_vocab)
    return Tokenizer(vocab.words()).warm_up()
