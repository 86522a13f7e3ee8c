"""The mapping JSON and mappings/fields.py agree, and dims come from the manifest."""
import json

import pytest

import mappings
from mappings import MappingError, VectorDims, fields


def _all_paths(props, prefix=""):
    for name, spec in props.items():
        path = f"{prefix}{name}"
        yield path
        if "properties" in spec:
            yield from _all_paths(spec["properties"], prefix=f"{path}.")


def test_every_named_field_is_mapped_and_every_mapped_field_is_named():
    body = mappings.product_index_body(VectorDims(shared=384, image_feature=1280))
    mapped = set(_all_paths(body["mappings"]["properties"]))
    named = {v for k, v in vars(fields).items() if k.isupper() and isinstance(v, str)}
    named = {n for n in named if n not in (fields.SEP, fields.CATEGORY_LEVEL_PREFIX, fields.SUGGEST_CONTEXT)}
    named = {fields.nested(n) if n in (fields.IMAGE_URL, fields.IMAGE_VECTOR, fields.IMAGE_FEATURE) else n
             for n in named}
    named |= set(fields.CATEGORY_LEVEL_FIELDS)
    assert named == mapped


def test_vectors_use_lucene_hnsw_and_manifest_dims():
    body = mappings.product_index_body(VectorDims(shared=256, image_feature=1280))
    props = body["mappings"]["properties"]
    specs = [props[fields.TEXT_VECTOR], props[fields.FUSED_VECTOR],
             props[fields.IMAGES]["properties"][fields.IMAGE_VECTOR],
             props[fields.IMAGES]["properties"][fields.IMAGE_FEATURE]]
    assert [s["dimension"] for s in specs] == [256, 256, 256, 1280]
    assert all(s["method"]["engine"] == "lucene" and s["method"]["name"] == "hnsw" for s in specs)
    assert body["settings"]["index"]["knn"] is True


@pytest.mark.parametrize("bad", [0, -3, None, "384", 20000])
def test_bad_dimension_is_a_clear_error(bad):
    with pytest.raises(MappingError, match="dimension"):
        mappings.product_index_body(VectorDims(shared=bad, image_feature=1280))


def test_manifest_without_spaces_is_refused():
    with pytest.raises(MappingError, match="manifest"):
        VectorDims.from_manifest({"text": {"dim": 384}})


def test_check_dims_reports_disagreement():
    body = mappings.product_index_body(VectorDims(shared=384, image_feature=1280))
    problems = mappings.check_dims(body["mappings"], VectorDims(shared=256, image_feature=1280))
    assert len(problems) == 3 and all("384" in p and "256" in p for p in problems)
    assert mappings.check_dims(body["mappings"], VectorDims(shared=384, image_feature=1280)) == []


def test_check_fields_names_what_an_older_index_lacks():
    dims = VectorDims(shared=384, image_feature=1280)
    body = mappings.product_index_body(dims)
    assert mappings.check_fields(body["mappings"], dims) == []
    old = json.loads(json.dumps(body["mappings"]))
    del old["properties"][fields.IMAGE_URLS]
    del old["properties"][fields.IMAGES]["properties"][fields.IMAGE_URL]
    (problem,) = mappings.check_fields(old, dims)
    assert fields.IMAGE_URLS in problem and fields.nested(fields.IMAGE_URL) in problem and "older" in problem


def test_vector_options_shape_the_vector_fields_and_are_recorded():
    dims = VectorDims(shared=384, image_feature=1280)
    body = mappings.product_index_body(dims, meta={"other": 1},
                                       vectors=mappings.VectorOptions(quantization="sq", image_feature=False))
    props = body["mappings"]["properties"]
    images = props[fields.IMAGES]["properties"]
    assert fields.IMAGE_FEATURE not in images
    specs = [props[fields.TEXT_VECTOR], props[fields.FUSED_VECTOR], images[fields.IMAGE_VECTOR]]
    assert all(s["method"]["parameters"]["encoder"] == {"name": "sq"} for s in specs)
    assert all(s["method"]["engine"] == "lucene" for s in specs)
    meta = body["mappings"]["_meta"]
    assert meta["other"] == 1
    assert mappings.VectorOptions.from_mapping(body["mappings"]) == mappings.VectorOptions("sq", False)
    # an index made this way fits these dims, and lacks nothing it should have
    assert mappings.check_dims(body["mappings"], dims) == []
    assert mappings.check_fields(body["mappings"], dims) == []


def test_default_vectors_are_float32_with_features_and_older_indices_read_so():
    dims = VectorDims(shared=384, image_feature=1280)
    body = mappings.product_index_body(dims)
    props = body["mappings"]["properties"]
    assert "encoder" not in props[fields.TEXT_VECTOR]["method"]["parameters"]
    assert fields.IMAGE_FEATURE in props[fields.IMAGES]["properties"]
    older = {k: v for k, v in body["mappings"].items() if k != "_meta"}
    assert mappings.VectorOptions.from_mapping(older) == mappings.VectorOptions()


def test_bad_vector_options_are_clear_errors():
    with pytest.raises(MappingError, match="pq"):
        mappings.VectorOptions(quantization="pq")
    bad = {"_meta": {mappings.VECTORS_META_KEY: {"format": 7}}}
    with pytest.raises(MappingError, match="vector options"):
        mappings.VectorOptions.from_mapping(bad)
