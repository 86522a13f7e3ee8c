"""The end-to-end demo: models → engine → catalog → alignment → ingest → searches → evaluation.

Every step reuses what an earlier run built (the model manifest, the running node, the catalog,
heads trained on the same catalog, products unchanged since the last load), so a rerun takes
seconds.  Each step is the library call the matching `cmsearch` command makes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from demo.fashion_catalog import CLASSES, build_catalog

Log = Callable[[str], None]
INDEX = "cmsearch-demo"
# every class has per_class relevant products, so recall@10 is capped at 10/per_class: precision instead
METRICS_NAMES = ("ndcg@10", "precision@10", "mrr")
EVAL_PROFILES = ("bm25", "dense_text", "image", "hybrid_minmax", "hybrid_rrf", "hybrid_minmax_noboost")


@dataclass
class DemoConfig:
    work_dir: Path
    models_dir: Path | None = None
    url: str | None = None          # a user's cluster; default: the local node
    index: str = INDEX
    per_class: int = 200
    photo_queries_per_class: int = 5
    seed: int = 7


@dataclass
class DemoTimes:
    steps: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, t0: float) -> None:
        self.steps[name] = round(time.perf_counter() - t0, 1)


def _banner(log: Log, text: str) -> None:
    log(f"\n== {text}")


def _catalog(cfg: DemoConfig, log: Log) -> dict:
    out = cfg.work_dir / "catalog"
    stamp = out / "BUILT.json"
    want = {"per_class": cfg.per_class, "queries_per_class": cfg.photo_queries_per_class, "seed": cfg.seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        log(f"catalog: reusing {out}")
        return {"catalog": out / "catalog.jsonl", "queries": out / "queries.jsonl", "aliases": out / "aliases.json"}
    built = build_catalog(out, per_class=cfg.per_class, queries_per_class=cfg.photo_queries_per_class, seed=cfg.seed)
    stamp.write_text(json.dumps(want))
    log(f"catalog: {built['products']} products with photos and bilingual titles in {out}")
    return built


def _heads(catalog: Path, models_dir: Path, heads_dir: Path, log: Log) -> None:
    from models.heads import HeadsError, Heads
    from models.training.train_catalog import run as train
    from models.manifest import sha256_file as sha256

    try:
        h = Heads.load(heads_dir)
        if h.manifest.get("training", {}).get("catalog_sha256") == sha256(catalog):
            log(f"heads: reusing {heads_dir} (trained on this catalog)")
            return
    except HeadsError:
        pass
    train(catalog, models_dir, heads_dir, cache_dir=heads_dir.parent / "feature-cache", log=log)
    from models.heads_registry import register_heads

    # registered by identity, so `cmsearch search --index <demo index>` finds them without --heads
    log(f"heads registered at {register_heads(models_dir, heads_dir)}")


def _ingest(cfg: DemoConfig, client, catalog: Path, aliases: Path, models_dir: Path, heads_dir: Path, log: Log):
    from analysis import AliasTable
    from models.space import Space
    from plugin_ingest.index_admin import check_index
    from plugin_ingest.ingestor import IngestOptions, Ingestor

    encoders = Space.load(models_dir, heads_dir, strict=True).open_all()
    # the demo owns its index: one that no longer fits this space or this mapping is rebuilt
    stale = client.indices.exists(index=cfg.index) and check_index(client, cfg.index, encoders.dims,
                                                                   space=encoders.identity)
    if stale:
        log(f"rebuilding {cfg.index}: " + "; ".join(stale))
    options = IngestOptions(index=cfg.index, create=True, recreate=bool(stale), aliases=AliasTable.load(aliases),
                            progress=False,
                            rejects_path=cfg.work_dir / "rejects.jsonl",
                            checkpoint_path=cfg.work_dir / f"{cfg.index}.checkpoint.json")
    report = Ingestor(catalog, options, client=client, encoders=encoders, log=log).run()
    log(report.table())
    return report


def _show(result, log: Log, n: int = 5) -> None:
    for i, hit in enumerate(result.hits[:n], 1):
        more = f"  (+{len(hit.variants)} like it)" if hit.variants else ""
        log(f"  {i}. {hit.title[:44]:44}  {hit.brand or '':10} {(hit.category or '')[:16]:16} {hit.score:.4f}{more}")
    if not result.hits:
        log(f"  (no results, total {result.total})")
    for note in result.notes:
        log(f"  note: {note}")


def _examples(searcher, queries_file: Path, log: Log) -> None:
    from query_builder import Filters, QueryImage, SearchRequest, Searcher

    photos = [json.loads(line) for line in queries_file.read_text(encoding="utf-8").splitlines()]
    base = queries_file.parent
    bag = next(q for q in photos if q["label"] == 8)
    coat = next(q for q in photos if q["label"] == 4)
    examples = [
        ("Chinese text: 深色连衣裙", SearchRequest(text="深色连衣裙")),
        ("English text: light sneakers", SearchRequest(text="light sneakers")),
        (f"a photo ({bag['image']}, a bag from the test split)",
         SearchRequest(images=(QueryImage.from_path(base / bag["image"]),))),
        (f"photo + text: 北风 + {coat['image']} (a coat)",
         SearchRequest(text="北风", images=(QueryImage.from_path(base / coat["image"]),))),
        ("brand filter: 外套 with brand=summit", SearchRequest(text="外套", filters=Filters(brand=("summit",)))),
    ]
    for title, req in examples:
        _banner(log, f"search — {title}  [hybrid_minmax]")
        _show(searcher.search(req), log)
    # near-duplicates (the catalog has many products titled alike) folded into one hit each
    from mappings import fields

    diverse = Searcher(searcher.client, searcher.profile.with_(name="hybrid_minmax_collapse", collapse=fields.GROUP),
                       searcher.space, index=searcher.index, aliases=searcher.aliases)
    _banner(log, "search — 深色连衣裙, same brand and title collapsed  [hybrid_minmax + collapse: group]")
    _show(diverse.search(SearchRequest(text="深色连衣裙")), log)
    _banner(log, "search — 笔记本电脑 (laptop: nothing like it in a clothing shop)  [hybrid_minmax]")
    _show(searcher.search(SearchRequest(text="笔记本电脑")), log)
    _banner(log, "suggestions — lianyi (pinyin of 连衣…)")
    for sug in searcher.suggest("lianyi", size=5):
        log(f"  {sug.kind:9} {sug.text}")


def judgments(catalog: Path, queries_file: Path):
    """Judged queries over the demo catalog, as two sets: text queries and photo queries.

    Relevance is the product's class (from its photo's label).  Text queries name a class in
    Chinese or English (grade 1 for every product of the class), or a brand and a class (grade 2
    for that brand's products of the class, 1 for the rest of the class).  Photo queries are
    test-split photos the catalog never saw (grade 1 for every product of the same class).  The
    sets are kept apart so that profiles that cannot read one kind of query (BM25 and photos)
    are compared on the same queries as the others.
    """
    from evaluation.judgments import JudgedQuery, JudgmentSet

    by_class: dict[int, list[dict]] = {}
    for line in catalog.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        by_class.setdefault(int(rec["id"].split("-")[1]), []).append(rec)
    text = []
    for cls in CLASSES:
        members = by_class.get(cls.label, [])
        grades = {r["id"]: 1 for r in members}
        text.append(JudgedQuery(id=f"zh-{cls.label}", text=cls.zh, grades=grades))
        text.append(JudgedQuery(id=f"en-{cls.label}", text=cls.en, grades=grades))
        if members:
            brand, zh_brand = members[0]["brand"], members[0]["title"].split()[0]
            text.append(JudgedQuery(id=f"brand-{cls.label}", text=f"{zh_brand} {cls.zh}",
                                    grades={r["id"]: (2 if r["brand"] == brand else 1) for r in members}))
    photos = []
    for line in queries_file.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        photos.append(JudgedQuery(id=q["id"], image=queries_file.parent / q["image"],
                                  grades={r["id"]: 1 for r in by_class.get(q["label"], [])}))
    return JudgmentSet("fashion-demo-text", tuple(text)), JudgmentSet("fashion-demo-photo", tuple(photos))


def run_demo(cfg: DemoConfig, log: Log = print) -> dict:
    from engine import LocalEngine
    from engine.client import ConnectionSettings
    from evaluation.metrics import parse_metrics
    from evaluation.runner import format_table, run_profiles
    from evaluation.search_adapter import SearchFactory
    from models.build import build_models
    from models.manifest import default_models_dir
    from models.space import Space

    times = DemoTimes()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    models_dir = Path(cfg.models_dir or default_models_dir())
    heads_dir = cfg.work_dir / "heads"

    _banner(log, "1/6 models (registry-shipped weights → ONNX)")
    t0 = time.perf_counter()
    build_models(models_dir, progress=log)
    times.step("models", t0)

    _banner(log, "2/6 engine")
    t0 = time.perf_counter()
    url = cfg.url or LocalEngine().start(progress=log)
    conn = ConnectionSettings.resolve(url)
    client = conn.client()
    log(f"OpenSearch {client.info()['version']['number']} at {conn.url}")
    times.step("engine", t0)

    _banner(log, "3/6 demo catalog (Fashion-MNIST photos, bilingual titles, brands, category tree)")
    t0 = time.perf_counter()
    built = _catalog(cfg, log)
    times.step("catalog", t0)

    _banner(log, "4/6 alignment: projection heads + category classifier trained on the catalog")
    t0 = time.perf_counter()
    _heads(built["catalog"], models_dir, heads_dir, log)
    times.step("train", t0)

    _banner(log, f"5/6 ingest into {cfg.index}")
    t0 = time.perf_counter()
    _ingest(cfg, client, built["catalog"], built["aliases"], models_dir, heads_dir, log)
    times.step("ingest", t0)

    _banner(log, "6/6 searches and evaluation")
    t0 = time.perf_counter()
    from analysis import AliasTable

    from query_builder import Searcher

    space = Space.load(models_dir, heads_dir, strict=False)
    aliases = AliasTable.load(built["aliases"])
    _examples(Searcher(client, "hybrid_minmax", space, index=cfg.index, aliases=aliases), built["queries"], log)
    factory = SearchFactory(client, cfg.index, space, aliases=aliases)
    metrics = parse_metrics(METRICS_NAMES)
    searches = factory.profiles(list(EVAL_PROFILES))
    evaluation = {}
    for jset in judgments(built["catalog"], built["queries"]):
        run = run_profiles(jset, searches, metrics)
        _banner(log, f"evaluation: {jset.name}, {len(jset)} judged queries (a profile that cannot read "
                     "a query is counted as skipped)")
        log(format_table(run))
        evaluation[jset.name] = {p: dict(s.means) for p, s in run.summaries.items()}
    times.step("search+eval", t0)
    log("\nstep times (s): " + ", ".join(f"{k} {v}" for k, v in times.steps.items()))
    return {"times": times.steps, "eval": evaluation}
