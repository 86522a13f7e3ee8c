"""The Dashboards saved objects against the real indices' mappings (Dashboards itself cannot run here).

Every field a visualization aggregates on, filters by or offers as a control must exist in the
live mapping of the index its pattern points to, and be aggregatable where it is aggregated;
every reference must resolve; the committed NDJSON must be what the generator writes.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path

import pytest

import mappings
from evaluation import events, results_index
from evaluation.index_util import ensure_index, mapping_types

REPO = Path(__file__).resolve().parents[1]
NDJSON = REPO / "dashboards" / "saved_objects.ndjson"
AGGREGATABLE = {"keyword", "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                "date", "boolean", "ip"}


def _objects() -> list[dict]:
    return [json.loads(line) for line in NDJSON.read_text(encoding="utf-8").splitlines() if line.strip()]


def _generator():
    spec = importlib.util.spec_from_file_location("build_saved_objects", REPO / "dashboards" / "build_saved_objects.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _field_uses(obj: dict) -> list[tuple[str, str, bool]]:
    """(index-pattern id, field, must be aggregatable) for everything the object names."""
    refs = {r["name"]: r["id"] for r in obj.get("references", [])}
    vis = json.loads(obj["attributes"]["visState"])
    search = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    out = []
    pattern = refs.get(search.get("indexRefName", ""))
    for agg in vis.get("aggs", []):
        field = agg.get("params", {}).get("field")
        if field:
            out.append((pattern, field, True))
    for f in search.get("filter", []):
        fp = refs[f["meta"]["indexRefName"]]
        out.append((fp, f["meta"]["key"], True))
        for key in f["query"].get("match_phrase", {}):
            out.append((fp, key, False))
    for c in vis.get("params", {}).get("controls", []):
        out.append((refs[c["indexPatternRefName"]], c["fieldName"], True))
    return out


def test_ndjson_is_the_generator_output():
    assert NDJSON.read_text(encoding="utf-8") == _generator().render(), \
        "saved_objects.ndjson is stale: run .venv/bin/python dashboards/build_saved_objects.py"


def test_every_reference_resolves_and_every_visualization_is_on_the_dashboard():
    objs = _objects()
    ids = {(o["type"], o["id"]) for o in objs}
    assert len(ids) == len(objs), "duplicate saved-object ids"
    for o in objs:
        for r in o.get("references", []):
            assert (r["type"], r["id"]) in ids, f"{o['id']} references missing {r['type']} {r['id']}"
    dash = next(o for o in objs if o["type"] == "dashboard")
    panels = json.loads(dash["attributes"]["panelsJSON"])
    names = {r["name"] for r in dash["references"]}
    assert {p["panelRefName"] for p in panels} == names
    assert {r["id"] for r in dash["references"]} == {o["id"] for o in objs if o["type"] == "visualization"}


def test_the_required_views_exist():
    objs = {o["id"]: o for o in _objects()}
    titles = {o["attributes"]["title"] for o in objs.values() if o["type"] == "index-pattern"}
    assert titles == {"products*", f"{results_index.DEFAULT_INDEX}*", f"{events.DEFAULT_INDEX}*"}
    over_time = json.loads(objs["cmsearch-eval-metric-over-time"]["attributes"]["visState"])
    assert [a["type"] for a in over_time["aggs"]] == ["avg", "date_histogram", "terms"]
    worst = json.loads(objs["cmsearch-eval-worst-queries"]["attributes"]["visState"])
    q = next(a for a in worst["aggs"] if a["params"].get("field") == results_index.QUERY_TEXT)
    assert q["params"]["order"] == "asc" and q["params"]["orderBy"] == "1"    # lowest average first
    facet_fields = {a["params"].get("field") for o in ("cmsearch-products-brands", "cmsearch-products-categories")
                    for a in json.loads(objs[o]["attributes"]["visState"])["aggs"]}
    assert {mappings.fields.BRAND, mappings.fields.category_level(0)} <= facet_fields


def test_default_index_names_match_the_patterns():
    patterns = {o["id"]: o["attributes"]["title"] for o in _objects() if o["type"] == "index-pattern"}
    assert fnmatch.fnmatch(results_index.DEFAULT_INDEX, patterns["cmsearch-eval"])
    assert fnmatch.fnmatch(events.DEFAULT_INDEX, patterns["cmsearch-events"])
    assert fnmatch.fnmatch("products", patterns["cmsearch-products"])


@pytest.mark.engine
def test_every_field_exists_in_the_live_mappings(os_client, fresh_index):
    live = {}
    name = fresh_index("dash-products")
    os_client.indices.create(index=name, body=mappings.product_index_body(mappings.VectorDims(384, 1280)))
    live["cmsearch-products"] = name
    live["cmsearch-eval"] = fresh_index("dash-eval")
    ensure_index(os_client, live["cmsearch-eval"], results_index.index_body())
    live["cmsearch-events"] = fresh_index("dash-events")
    ensure_index(os_client, live["cmsearch-events"], events.index_body())
    types = {pid: mapping_types(os_client.indices.get_mapping(index=ix)[ix]["mappings"]["properties"])
             for pid, ix in live.items()}

    objs = _objects()
    for o in objs:
        if o["type"] == "index-pattern" and "timeFieldName" in o["attributes"]:
            assert types[o["id"]].get(o["attributes"]["timeFieldName"]) == "date", o["id"]
    checked = 0
    for o in objs:
        if o["type"] != "visualization":
            continue
        for pattern, field, agg in _field_uses(o):
            have = types[pattern].get(field)
            assert have is not None, f"{o['id']}: field {field!r} is not in the {pattern} mapping"
            if agg:
                assert have in AGGREGATABLE, f"{o['id']}: field {field!r} is {have}, not aggregatable"
            checked += 1
    assert checked >= 15


def test_field_check_catches_a_wrong_field():
    """The checker itself: a misspelt field in a visualization is reported."""
    o = next(o for o in _objects() if o["id"] == "cmsearch-products-brands")
    vis = json.loads(o["attributes"]["visState"])
    vis["aggs"][1]["params"]["field"] = "brandd"
    o["attributes"]["visState"] = json.dumps(vis)
    uses = _field_uses(o)
    product_fields = mapping_types(mappings.product_index_body(mappings.VectorDims(8, 4))["mappings"]["properties"])
    assert [f for _, f, _ in uses if f not in product_fields] == ["brandd"]
