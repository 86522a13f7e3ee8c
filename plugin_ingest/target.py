"""The index a load writes to: created or checked before the load, merged after it.

Also the tokenizer of the load, since its dictionary takes the index's own brand and category
vocabulary into account when the index already holds products (one segmentation for the
whole index).
"""
from __future__ import annotations

from typing import Any, Callable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError, TransportError

from analysis import AliasTable, Tokenizer, normalize_brand
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
    products may be there).

    Creating is create-if-absent: N parts of one load (``--part``), each with ``--create``, race
    to create the index, and the ones that lose find it made by the winner.  They then check it
    like any existing index, so they go on only when it was made for the same space (same
    models, dimensions and heads); ``--recreate`` is not tolerant (it is refused with parts).
    """
    from plugin_ingest.index_admin import IndexExistsError, check_index, create_product_index

    exists = bool(client.indices.exists(index=o.index))
    if o.recreate or (not exists and o.create):
        try:
            layout = index_layout(client, o.shards, o.replicas)
            if layout.warning:
                log(f"warning: {layout.warning}")
            create_product_index(client, o.index, space.dims, recreate=o.recreate, shards=layout.shards,
                                 replicas=layout.replicas, space=space.identity, vectors=o.vectors)
        except (IndexExistsError, RequestError) as exc:
            if o.recreate or not _already_exists(exc):
                raise IngestError(str(exc)) from None
            log(f"index {o.index} was created meanwhile by another load; checking it")
        else:
            log(f"created index {o.index} ({layout.describe()}; {(o.vectors or VectorOptions()).describe()})")
            return False
    elif not exists:
        raise IngestError(f"index {o.index!r} does not exist; pass --create to create it from the "
                          f"product mapping, or create it with `cmsearch index create {o.index}`")
    # an index another load created a moment ago may still be starting its shards: searching
    # it (reading its vocabulary) fails with 503 until they are.  Health says "yellow" for a new
    # index whose primaries are still initializing, so wait for no shard initializing; a no-op
    # on an index in use.
    client.cluster.health(index=o.index, wait_for_status="yellow", wait_for_no_initializing_shards=True,
                          params={"timeout": "60s"}, request_timeout=90)
    try:
        problems = check_index(client, o.index, space.dims, space=space.identity)
        recorded = index_vectors(client, o.index)
    except MappingError as exc:   # an unreadable _meta: say which index, not a traceback
        raise IngestError(f"index {o.index!r}: {exc}") from None
    if problems:
        raise IngestError(f"index {o.index!r} does not fit these models: " + "; ".join(problems)
                          + (" (use --recreate to rebuild it)" if o.part is None else ""))
    if o.vectors is not None and o.vectors != recorded:
        log(f"note: {o.index} keeps the vector options it was created with ({recorded.describe()}); "
            "they apply when an index is created")
    return True


def _already_exists(exc: Exception) -> bool:
    """The index exists: found before creating it, or refused by OpenSearch as created meanwhile."""
    from plugin_ingest.index_admin import IndexExistsError

    return isinstance(exc, IndexExistsError) or getattr(exc, "error", None) == "resource_already_exists_exception"


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
