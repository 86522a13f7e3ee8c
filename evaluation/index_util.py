"""Creating the add-on's own small indices (evaluation results, events) and bulk-writing to them.

Both indices have strict mappings: a document with a misspelled field is refused instead of
silently creating a field no Dashboards visualization looks at.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from opensearchpy import OpenSearch, helpers

__all__ = ["IndexMismatch", "BulkWriteError", "ensure_index", "mapping_types", "bulk_write"]


class IndexMismatch(RuntimeError):
    """An index of that name exists but its mapping is not the one this code writes."""


class BulkWriteError(RuntimeError):
    """Some documents were refused; ``errors`` holds the per-item reasons."""

    def __init__(self, index: str, errors: list[Any]):
        first = errors[0] if errors else {}
        super().__init__(f"{len(errors)} document(s) refused by {index}; first: {first}")
        self.errors = errors


def mapping_types(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flattened ``{"a.b": type}`` of a mapping's properties, multi-fields included (``a.keyword``)."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out[path] = spec.get("type", "object")
            out.update(mapping_types(spec["properties"], path + "."))
        else:
            out[path] = spec.get("type", "object")
        for sub, subspec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = subspec.get("type", "object")
    return out


def ensure_index(client: OpenSearch, name: str, body: Mapping[str, Any]) -> bool:
    """Create ``name`` with ``body`` unless it exists; an existing index must have every field
    of ``body`` with the same type.  Returns True when it was created."""
    if client.indices.exists(index=name):
        live = client.indices.get_mapping(index=name)
        props = next(iter(live.values()))["mappings"].get("properties", {})
        have, want = mapping_types(props), mapping_types(body["mappings"]["properties"])
        wrong = [f"{f} is {have[f]}, not {t}" for f, t in want.items() if f in have and have[f] != t]
        missing = [f for f in want if f not in have]
        if wrong or missing:
            parts = ([f"fields of another type: {', '.join(wrong[:6])}"] if wrong else []) + \
                    ([f"{len(missing)} field(s) missing: {', '.join(missing[:6])}"] if missing else [])
            raise IndexMismatch(f"index {name!r} exists with another mapping ({'; '.join(parts)}); "
                                "use another index name or delete it")
        return False
    client.indices.create(index=name, body=dict(body))
    return True


def bulk_write(client: OpenSearch, index: str, docs: Iterable[tuple[str | None, Mapping[str, Any]]],
               *, refresh: bool = True) -> int:
    """Index ``(id, source)`` pairs (``id`` None: generated); raises :class:`BulkWriteError` listing refusals."""
    actions = ({"_index": index, **({"_id": doc_id} if doc_id else {}), "_source": dict(src)} for doc_id, src in docs)
    ok, errors = helpers.bulk(client, actions, raise_on_error=False, raise_on_exception=True, chunk_size=500)
    if refresh:
        client.indices.refresh(index=index)
    if errors:
        raise BulkWriteError(index, list(errors))
    return ok
