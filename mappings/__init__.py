"""Product index settings and mappings, with vector dimensions from a model manifest."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import fields

__all__ = ["fields", "VectorDims", "product_index_body", "check_dims", "MappingError"]

_PRODUCTS = Path(__file__).with_name("products.json")


class MappingError(ValueError):
    """The mapping cannot be built, or disagrees with the model manifest."""


@dataclass(frozen=True)
class VectorDims:
    """Vector sizes the index is built for (from the model manifest)."""

    shared: int      # text_vector, fused_vector, images.vector
    image_feature: int  # images.feature (raw backbone feature)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "VectorDims":
        try:
            spaces = manifest["spaces"]
            return cls(shared=int(spaces["shared"]["dim"]),
                       image_feature=int(spaces["image_feature"]["dim"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MappingError(f"model manifest lacks vector dimensions: {exc!r}") from None


def _vector_fields(props: dict) -> dict[str, dict]:
    out = {
        fields.TEXT_VECTOR: props[fields.TEXT_VECTOR],
        fields.FUSED_VECTOR: props[fields.FUSED_VECTOR],
        fields.nested(fields.IMAGE_VECTOR): props[fields.IMAGES]["properties"][fields.IMAGE_VECTOR],
        fields.nested(fields.IMAGE_FEATURE): props[fields.IMAGES]["properties"][fields.IMAGE_FEATURE],
    }
    return out


def product_index_body(dims: VectorDims, *, shards: int = 1, replicas: int = 0,
                       meta: Mapping[str, Any] | None = None) -> dict:
    """The create-index body for the product index, vector dims filled in.

    ``meta`` goes into the mapping's ``_meta`` (the identity of the space that makes the
    index's vectors, so that vectors of another space are refused later).
    """
    for name, value in (("shared", dims.shared), ("image_feature", dims.image_feature)):
        if not isinstance(value, int) or value <= 0 or value > 16000:
            raise MappingError(f"vector dimension {name}={value!r} is not a positive integer <= 16000")
    body = json.loads(_PRODUCTS.read_text(encoding="utf-8"))
    body["settings"]["index"]["number_of_shards"] = shards
    body["settings"]["index"]["number_of_replicas"] = replicas
    vf = _vector_fields(body["mappings"]["properties"])
    for path, spec in vf.items():
        spec["dimension"] = dims.image_feature if path == fields.nested(fields.IMAGE_FEATURE) else dims.shared
    if meta:
        body["mappings"]["_meta"] = dict(meta)
    return body


def check_dims(existing_mapping: Mapping[str, Any], dims: VectorDims) -> list[str]:
    """Differences between an existing index's vector dims and the manifest's ('' list if none)."""
    want = _vector_fields(product_index_body(dims)["mappings"]["properties"])
    props = existing_mapping.get("properties", {})
    problems = []
    for path, spec in want.items():
        node: Any = props
        for part in path.split("."):
            node = (node or {}).get(part, {})
            if "properties" in node and part != path.split(".")[-1]:
                node = node["properties"]
        have = node.get("dimension") if isinstance(node, dict) else None
        if have != spec["dimension"]:
            problems.append(f"{path}: index has dimension {have}, model manifest says {spec['dimension']}")
    return problems



def _field_paths(props: Mapping[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for name, spec in props.items():
        out.add(prefix + name)
        if isinstance(spec, Mapping) and "properties" in spec:
            out |= _field_paths(spec["properties"], f"{prefix}{name}.")
    return out


def check_fields(existing_mapping: Mapping[str, Any], dims: VectorDims) -> list[str]:
    """Fields of the product mapping that an existing index lacks (an index made by an older version)."""
    want = _field_paths(product_index_body(dims)["mappings"]["properties"])
    missing = sorted(want - _field_paths(existing_mapping.get("properties", {})))
    return [f"index mapping lacks field(s) {missing} (it was created by an older version)"] if missing else []
