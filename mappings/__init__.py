"""Product index settings and mappings, with vector dimensions from a model manifest."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import fields

__all__ = ["fields", "VectorDims", "VectorOptions", "VECTORS_META_KEY", "QUANTIZATIONS", "product_index_body",
           "check_dims", "check_fields", "MappingError"]

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


VECTORS_META_KEY = "cmsearch_vectors"   # key of the vector options inside the index mapping's _meta
QUANTIZATIONS = ("none", "sq")          # sq: Lucene's built-in int8 scalar quantization (k-NN >= 2.16)


@dataclass(frozen=True)
class VectorOptions:
    """How the index stores its vectors: a memory / quality trade chosen when the index is created.

    - ``quantization``: ``"sq"`` has the Lucene engine keep an int8 copy of every vector and walk
      its HNSW graphs on that (a quarter of the float vectors' bytes); the floats stay on disk for
      merges.  ``"none"``: float32 only.
    - ``image_feature``: whether each image keeps its raw backbone feature (``images.feature``,
      the largest vector by far) for image -> image search; without it, photo searches use the
      shared-space image vector and the fused vector only.

    Recorded in the mapping's ``_meta`` so that ingest writes documents that fit and search
    leaves out what the index does not hold.
    """

    quantization: str = "none"
    image_feature: bool = True

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise MappingError(f"vector quantization {self.quantization!r} is not one of {', '.join(QUANTIZATIONS)}")

    def to_meta(self) -> dict[str, Any]:
        return {"format": 1, "quantization": self.quantization, "image_feature": self.image_feature}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "VectorOptions":
        """The options an index mapping records; an index made before they were recorded (or
        without the key) stores full-precision vectors with raw features, the only kind there was."""
        meta = (mapping.get("_meta") or {}).get(VECTORS_META_KEY)
        if meta is None:
            return cls()
        if not isinstance(meta, Mapping) or meta.get("format") != 1:
            raise MappingError(f"unreadable vector options in the index _meta: {meta!r}"[:300])
        return cls(quantization=str(meta.get("quantization", "none")), image_feature=bool(meta.get("image_feature", True)))

    def describe(self) -> str:
        q = "int8 scalar-quantized (sq)" if self.quantization == "sq" else "float32"
        return f"vectors {q}, {'with' if self.image_feature else 'without'} raw image features"


def _vector_fields(props: dict) -> dict[str, dict]:
    image_props = props[fields.IMAGES]["properties"]
    out = {
        fields.TEXT_VECTOR: props[fields.TEXT_VECTOR],
        fields.FUSED_VECTOR: props[fields.FUSED_VECTOR],
        fields.nested(fields.IMAGE_VECTOR): image_props[fields.IMAGE_VECTOR],
    }
    if fields.IMAGE_FEATURE in image_props:
        out[fields.nested(fields.IMAGE_FEATURE)] = image_props[fields.IMAGE_FEATURE]
    return out


def product_index_body(dims: VectorDims, *, shards: int = 1, replicas: int = 0,
                       meta: Mapping[str, Any] | None = None, vectors: VectorOptions | None = None) -> dict:
    """The create-index body for the product index, vector dims filled in.

    ``meta`` goes into the mapping's ``_meta`` (the identity of the space that makes the
    index's vectors, so that vectors of another space are refused later); ``vectors`` (default:
    float32 with raw features) shapes the vector fields and is recorded there too.
    """
    vectors = vectors or VectorOptions()
    for name, value in (("shared", dims.shared), ("image_feature", dims.image_feature)):
        if not isinstance(value, int) or value <= 0 or value > 16000:
            raise MappingError(f"vector dimension {name}={value!r} is not a positive integer <= 16000")
    body = json.loads(_PRODUCTS.read_text(encoding="utf-8"))
    body["settings"]["index"]["number_of_shards"] = shards
    body["settings"]["index"]["number_of_replicas"] = replicas
    props = body["mappings"]["properties"]
    if not vectors.image_feature:
        del props[fields.IMAGES]["properties"][fields.IMAGE_FEATURE]
    for path, spec in _vector_fields(props).items():
        spec["dimension"] = dims.image_feature if path == fields.nested(fields.IMAGE_FEATURE) else dims.shared
        if vectors.quantization == "sq":
            spec["method"]["parameters"]["encoder"] = {"name": "sq"}
    body["mappings"]["_meta"] = {**dict(meta or {}), VECTORS_META_KEY: vectors.to_meta()}
    return body


def check_dims(existing_mapping: Mapping[str, Any], dims: VectorDims) -> list[str]:
    """Differences between an existing index's vector dims and the manifest's ('' list if none)."""
    want = _vector_fields(product_index_body(dims, vectors=VectorOptions.from_mapping(existing_mapping))
                          ["mappings"]["properties"])
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
    body = product_index_body(dims, vectors=VectorOptions.from_mapping(existing_mapping))
    want = _field_paths(body["mappings"]["properties"])
    missing = sorted(want - _field_paths(existing_mapping.get("properties", {})))
    return [f"index mapping lacks field(s) {missing} (it was created by an older version)"] if missing else []
