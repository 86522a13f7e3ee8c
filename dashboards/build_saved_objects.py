"""Writes ``saved_objects.ndjson``: OpenSearch Dashboards index patterns, visualizations and a dashboard.

The NDJSON is generated, not hand-edited, so every field name comes from the code that writes
the indices (``mappings.fields`` for products, ``evaluation.results_index`` and
``evaluation.events`` for the add-on's own indices).  ``tests/test_dashboards.py`` checks that
the committed file equals this script's output and that every field it references exists,
aggregatable, in the live indices' mappings.

Run ``python dashboards/build_saved_objects.py`` after changing a field name or a visualization.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import events as ev  # noqa: E402
from evaluation import results_index as ri  # noqa: E402
from mappings import fields as F  # noqa: E402

OUT = Path(__file__).with_name("saved_objects.ndjson")

PRODUCTS = "cmsearch-products"
EVAL = "cmsearch-eval"
EVENTS = "cmsearch-events"
PATTERNS = {
    PRODUCTS: {"title": "products*", "timeFieldName": None},
    EVAL: {"title": f"{ri.DEFAULT_INDEX}*", "timeFieldName": ri.TIMESTAMP},
    EVENTS: {"title": f"{ev.DEFAULT_INDEX}*", "timeFieldName": ev.TIMESTAMP},
}
MIGRATION = {"index-pattern": "7.6.0", "visualization": "7.10.0", "dashboard": "7.9.3"}
DEFAULT_METRIC = "ndcg@10"


def _j(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def index_pattern(pid: str) -> dict:
    spec = PATTERNS[pid]
    attrs = {"title": spec["title"]}
    if spec["timeFieldName"]:
        attrs["timeFieldName"] = spec["timeFieldName"]
    # no "fields": Dashboards reads the field list from the cluster when the pattern is first loaded
    return {"id": pid, "type": "index-pattern", "attributes": attrs, "references": [],
            "migrationVersion": {"index-pattern": MIGRATION["index-pattern"]}}


def phrase(key: str, value: str, i: int) -> dict:
    return {"meta": {"alias": None, "negate": False, "disabled": False, "type": "phrase", "key": key,
                     "params": {"query": value},
                     "indexRefName": f"kibanaSavedObjectMeta.searchSourceJSON.filter[{i}].meta.index"},
            "query": {"match_phrase": {key: value}}, "$state": {"store": "appState"}}


def visualization(vid: str, title: str, pattern: str, vis_type: str, aggs: list[dict], params: dict,
                  filters: list[tuple[str, str]] = (), description: str = "") -> dict:
    flt = [phrase(k, v, i) for i, (k, v) in enumerate(filters)]
    refs = [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": pattern}]
    refs += [{"name": f["meta"]["indexRefName"], "type": "index-pattern", "id": pattern} for f in flt]
    search = {"query": {"query": "", "language": "kuery"}, "filter": flt,
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    for n, a in enumerate(aggs, 1):
        a.setdefault("id", str(n))
        a.setdefault("enabled", True)
    return {"id": vid, "type": "visualization",
            "attributes": {"title": title, "description": description, "version": 1, "uiStateJSON": "{}",
                           "visState": _j({"title": title, "type": vis_type, "aggs": aggs, "params": params}),
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _j(search)}},
            "references": refs, "migrationVersion": {"visualization": MIGRATION["visualization"]}}


def avg(field: str) -> dict:
    return {"type": "avg", "schema": "metric", "params": {"field": field}}


def count() -> dict:
    return {"type": "count", "schema": "metric", "params": {}}


def terms(field: str, schema: str, size: int, order: str = "desc", order_by: str = "1") -> dict:
    return {"type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": order, "orderBy": order_by, "otherBucket": False,
                       "missingBucket": False}}


def date_histogram(field: str) -> dict:
    return {"type": "date_histogram", "schema": "segment",
            "params": {"field": field, "interval": "auto", "useNormalizedOpenSearchInterval": True,
                       "min_doc_count": 1, "extended_bounds": {}}}


def line_params(y_title: str) -> dict:
    return {"type": "line", "grid": {"categoryLines": False},
            "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                              "style": {}, "scale": {"type": "linear"}, "labels": {"show": True, "truncate": 100},
                              "title": {}}],
            "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                           "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                           "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                           "title": {"text": y_title}}],
            "seriesParams": [{"show": True, "type": "line", "mode": "normal", "data": {"label": y_title, "id": "1"},
                              "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                              "showCircles": True, "interpolate": "linear"}],
            "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False,
            "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
            "labels": {}}


def hbar_params(x_title: str) -> dict:
    return {"type": "histogram", "grid": {"categoryLines": False},
            "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "left", "show": True,
                              "style": {}, "scale": {"type": "linear"},
                              "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 200}, "title": {}}],
            "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "bottom",
                           "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                           "labels": {"show": True, "rotate": 75, "filter": True, "truncate": 100},
                           "title": {"text": x_title}}],
            "seriesParams": [{"show": True, "type": "histogram", "mode": "normal", "data": {"label": x_title, "id": "1"},
                              "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                              "showCircles": True}],
            "addTooltip": True, "addLegend": False, "legendPosition": "right", "times": [], "addTimeMarker": False,
            "labels": {"show": True}, "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full",
                                                        "color": "#E7664C"}}


TABLE = {"perPage": 20, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
         "totalFunc": "sum", "percentageCol": "", "sort": {"columnIndex": None, "direction": None}}


def controls() -> dict:
    """Pick the data set and the metric the evaluation charts show."""
    ctl = [{"id": str(i), "type": "list", "label": label, "fieldName": field, "indexPatternRefName": f"control_{i}_index_pattern",
            "parent": "", "options": {"type": "terms", "multiselect": True, "dynamicOptions": True, "size": 50,
                                      "order": "desc"}}
           for i, (label, field) in enumerate((("Data set", ri.DATASET), ("Metric", ri.METRIC), ("Profile", ri.PROFILE)))]
    title = "cmsearch: evaluation filters"
    return {"id": "cmsearch-eval-controls", "type": "visualization",
            "attributes": {"title": title, "description": "Choose data sets, metrics and profiles for the charts",
                           "version": 1, "uiStateJSON": "{}",
                           "visState": _j({"title": title, "type": "input_control_vis", "aggs": [],
                                           "params": {"controls": ctl, "updateFiltersOnChange": True,
                                                      "useTimeFilter": False, "pinFilters": False}}),
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _j({"query": {"query": "", "language": "kuery"},
                                                                             "filter": []})}},
            "references": [{"name": c["indexPatternRefName"], "type": "index-pattern", "id": EVAL} for c in ctl],
            "migrationVersion": {"visualization": MIGRATION["visualization"]}}


def visualizations() -> list[dict]:
    m = DEFAULT_METRIC
    return [
        controls(),
        visualization("cmsearch-eval-metric-over-time", f"cmsearch: {m} per profile over time", EVAL, "line",
                      [avg(ri.VALUE), date_histogram(ri.TIMESTAMP), terms(ri.PROFILE, "group", 20)],
                      line_params(f"mean {m}"), [(ri.SCOPE, ri.SCOPE_MEAN), (ri.METRIC, m)],
                      "Mean of the metric over the judged queries, one line per profile, one point per run"),
        visualization("cmsearch-eval-latest-means", "cmsearch: means per profile and metric", EVAL, "table",
                      [avg(ri.VALUE), terms(ri.DATASET, "bucket", 20, "asc", "_key"),
                       terms(ri.PROFILE, "bucket", 20, "asc", "_key"), terms(ri.METRIC, "split", 10, "asc", "_key")],
                      {**TABLE, "row": True}, [(ri.SCOPE, ri.SCOPE_MEAN)],
                      "Average over the runs in the time range; narrow the range to one run to read its table"),
        visualization("cmsearch-eval-worst-queries", f"cmsearch: worst queries by {m}", EVAL, "table",
                      [avg(ri.VALUE), terms(ri.PROFILE, "bucket", 10, "asc", "_key"),
                       terms(ri.QUERY_TEXT, "bucket", 20, "asc", "1")],
                      TABLE, [(ri.SCOPE, ri.SCOPE_QUERY), (ri.METRIC, m)],
                      "The queries each profile does worst on (lowest average over the runs in range)"),
        visualization("cmsearch-products-brands", "cmsearch: products per brand", PRODUCTS, "horizontal_bar",
                      [count(), terms(F.BRAND, "segment", 25)], hbar_params("products"),
                      description="Brand facet counts of the product index"),
        visualization("cmsearch-products-categories", "cmsearch: products per category", PRODUCTS, "table",
                      [count(), terms(F.category_level(0), "bucket", 30), terms(F.category_level(1), "bucket", 30)],
                      TABLE, description="Category facet counts, top level and second level"),
        visualization("cmsearch-events-over-time", "cmsearch: searches and clicks over time", EVENTS, "line",
                      [count(), date_histogram(ev.TIMESTAMP), terms(ev.ACTION_NAME, "group", 10)],
                      line_params("events")),
        visualization("cmsearch-events-top-clicked", "cmsearch: most clicked products", EVENTS, "table",
                      [count(), terms(ev.OBJECT_ID, "bucket", 20)], TABLE, [(ev.ACTION_NAME, ev.CLICK)]),
    ]


def dashboard(vis: list[dict]) -> dict:
    layout = [(0, 0, 48, 6), (0, 6, 24, 15), (24, 6, 24, 15), (0, 21, 24, 15), (24, 21, 24, 15), (0, 36, 24, 15),
              (24, 36, 24, 15), (0, 51, 24, 15)]
    panels, refs = [], []
    for i, (v, (x, y, w, h)) in enumerate(zip(vis, layout)):
        panels.append({"version": "7.10.0", "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(i + 1)},
                       "panelIndex": str(i + 1), "embeddableConfig": {}, "panelRefName": f"panel_{i}"})
        refs.append({"name": f"panel_{i}", "type": "visualization", "id": v["id"]})
    return {"id": "cmsearch-relevance", "type": "dashboard",
            "attributes": {"title": "cmsearch relevance", "hits": 0, "version": 1, "timeRestore": True,
                           "timeFrom": "now-90d", "timeTo": "now",
                           "refreshInterval": {"pause": True, "value": 0},
                           "description": "Evaluation results per profile, worst queries, facets, user events",
                           "panelsJSON": _j(panels), "optionsJSON": _j({"hidePanelTitles": False, "useMargins": True}),
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _j({"query": {"query": "", "language": "kuery"},
                                                                             "filter": []})}},
            "references": refs, "migrationVersion": {"dashboard": MIGRATION["dashboard"]}}


def saved_objects() -> list[dict]:
    vis = visualizations()
    return [index_pattern(p) for p in PATTERNS] + vis + [dashboard(vis)]


def render() -> str:
    return "".join(_j(o) + "\n" for o in saved_objects())


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT} ({len(saved_objects())} objects)")
