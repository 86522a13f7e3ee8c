"""Creating, checking and removing the product index (bodies come from `mappings/`)."""
from __future__ import annotations

from typing import Any, Mapping

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

import mappings
from mappings import VectorDims


class IndexExistsError(RuntimeError):
    """The index exists and the caller did not ask to recreate it."""


def create_product_index(client: OpenSearch, name: str, dims: VectorDims, *, recreate: bool = False,
                         shards: int = 1, replicas: int = 0) -> dict:
    """Create ``name`` from the product mapping; refuses to overwrite unless ``recreate``.

    The body (and so its vector dimensions) is validated before anything is written.
    """
    body = mappings.product_index_body(dims, shards=shards, replicas=replicas)
    if client.indices.exists(index=name):
        if not recreate:
            raise IndexExistsError(f"index {name!r} already exists; use --recreate to delete and create it again")
        client.indices.delete(index=name)
    return client.indices.create(index=name, body=body)


def check_index(client: OpenSearch, name: str, dims: VectorDims) -> list[str]:
    """Problems that make ``name`` unusable with these model dims (empty when it fits)."""
    try:
        mapping = client.indices.get_mapping(index=name)[name]["mappings"]
    except NotFoundError:
        return [f"index {name!r} does not exist; create it with `cmsearch index create {name}`"]
    return mappings.check_dims(mapping, dims) + mappings.check_fields(mapping, dims)


def delete_index(client: OpenSearch, name: str) -> bool:
    try:
        client.indices.delete(index=name)
        return True
    except NotFoundError:
        return False


def index_stats(client: OpenSearch, name: str) -> dict[str, Any]:
    """Document count, size and vector dims of ``name``."""
    stats = client.indices.stats(index=name)["indices"][name]["primaries"]
    mapping: Mapping = client.indices.get_mapping(index=name)[name]["mappings"]
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
            "size_bytes": stats["store"]["size_in_bytes"], "vector_dims": dims}
