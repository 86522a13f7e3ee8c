"""Creating, checking and removing the product index (bodies come from `mappings/`).

An index made here records the identity of the space that makes its vectors in its mapping's
``_meta``; :func:`check_index` refuses another space, so vectors of two spaces never mix.
"""
from __future__ import annotations

from typing import Any, Mapping

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

import mappings
from mappings import VectorDims
from models.identity import META_KEY, SpaceIdentity, mismatch_message


class IndexExistsError(RuntimeError):
    """The index exists and the caller did not ask to recreate it."""


def create_product_index(client: OpenSearch, name: str, dims: VectorDims, *, recreate: bool = False,
                         shards: int = 1, replicas: int = 0, space: SpaceIdentity | None = None,
                         vectors: mappings.VectorOptions | None = None) -> dict:
    """Create ``name`` from the product mapping; refuses to overwrite unless ``recreate``.

    The body (and so its vector dimensions) is validated before anything is written; ``space``
    and ``vectors`` (how vectors are stored) are recorded in the mapping's ``_meta``.
    """
    meta = {META_KEY: space.to_meta()} if space is not None else None
    body = mappings.product_index_body(dims, shards=shards, replicas=replicas, meta=meta, vectors=vectors)
    if client.indices.exists(index=name):
        if not recreate:
            raise IndexExistsError(f"index {name!r} already exists; use --recreate to delete and create it again")
        client.indices.delete(index=name)
    return client.indices.create(index=name, body=body)


def _mapping(client: OpenSearch, name: str) -> Mapping[str, Any]:
    return client.indices.get_mapping(index=name)[name]["mappings"]


def recorded_space(mapping: Mapping[str, Any]) -> SpaceIdentity | None:
    """The space an index mapping records (None: none, an index made before indexes recorded it)."""
    try:
        return SpaceIdentity.from_mapping(mapping)
    except ValueError:
        return None


def check_index(client: OpenSearch, name: str, dims: VectorDims, *, space: SpaceIdentity | None = None) -> list[str]:
    """Problems that make ``name`` unusable with these model dims and this space (empty when it fits)."""
    try:
        mapping = _mapping(client, name)
    except NotFoundError:
        return [f"index {name!r} does not exist; create it with `cmsearch index create {name}`"]
    problems = mappings.check_dims(mapping, dims) + mappings.check_fields(mapping, dims)
    if space is not None and not problems:
        why = mismatch_message(name, recorded_space(mapping), space,
                               "adding vectors of another space would mix two spaces")
        if why:
            problems.append(why)
    return problems


def delete_index(client: OpenSearch, name: str) -> bool:
    try:
        client.indices.delete(index=name)
        return True
    except NotFoundError:
        return False


def index_stats(client: OpenSearch, name: str) -> dict[str, Any]:
    """Document count, size, vector dims, recorded space and vector options of ``name``."""
    stats = client.indices.stats(index=name)["indices"][name]["primaries"]
    mapping = _mapping(client, name)
    props = mapping.get("properties", {})
    f = mappings.fields
    dims = {
        f.TEXT_VECTOR: props.get(f.TEXT_VECTOR, {}).get("dimension"),
        f.FUSED_VECTOR: props.get(f.FUSED_VECTOR, {}).get("dimension"),
        f.nested(f.IMAGE_VECTOR): props.get(f.IMAGES, {}).get("properties", {}).get(f.IMAGE_VECTOR, {}).get("dimension"),
        f.nested(f.IMAGE_FEATURE): props.get(f.IMAGES, {}).get("properties", {}).get(f.IMAGE_FEATURE, {}).get("dimension"),
    }
    count = client.count(index=name)["count"]
    return {"index": name, "products": count, "segments_docs": stats["docs"]["count"],
            "size_bytes": stats["store"]["size_in_bytes"], "vector_dims": dims,
            "space": (mapping.get("_meta") or {}).get(META_KEY),
            "vectors": mappings.VectorOptions.from_mapping(mapping).to_meta()}
