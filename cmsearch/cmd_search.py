"""`cmsearch search "红色 椅子" [--image photo.jpg [--regions]] [--brand X] [--explain] [--json]`: a thin shell over query_builder."""
from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import click
from opensearchpy.exceptions import OpenSearchException, TransportError

from analysis import AliasError, AliasTable
from analysis.synonyms import SynonymError, SynonymTable
from query_builder import (BuildError, Filters, ProfileError, QueryImage, RegionSpec, RequestError, SearchError,
                           Searcher, SearchRequest, encode, load_profile, shipped_profiles)
from query_builder.regions import MERGES
from query_builder.request import FACETS, NumberRange
from query_builder.results import SearchResult

from .options import connection_options, fail, hint
from .space_options import echo_problems, open_space, space_options


class _TimedClient:
    """The client with the time spent in search round trips added up (``--explain``'s "engine")."""

    def __init__(self, client):
        self._client, self.seconds = client, 0.0

    def _timed(self, fn):
        def call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t0
        return call

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        return self._timed(attr) if name in ("search", "msearch", "count") else attr


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _fit(s: str, width: int) -> str:
    """``s`` cut and padded to ``width`` terminal columns (CJK characters take two)."""
    out, w = "", 0
    for ch in s:
        cw = _width(ch)
        if w + cw > width - (1 if _width(s) > width else 0):
            out += "…"
            w += 1
            break
        out += ch
        w += cw
    return out + " " * max(0, width - w)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def render(result: SearchResult) -> str:
    """The result as a readable table, then facets, notes and (if asked) explanations."""
    lines = [f"{result.total} matched · profile {result.profile} · {result.fusion_path} · "
             f"retrievers: {', '.join(result.retrievers)} · {result.took_ms:.0f} ms"]
    cols = (("#", 3), ("score", 8), ("id", 12), ("title", 40), ("brand", 14), ("category", 14), ("price", 9),
            ("image", 24))
    regions = any(h.region is not None for h in result.hits)
    if regions:
        cols = cols[:-1] + (("region (l,t,r,b)", 20), cols[-1])
    lines.append(" ".join(_fit(name, w) for name, w in cols))
    for i, h in enumerate(result.hits, start=1):
        row = (str(i), f"{h.score:.4f}", h.id, h.title, h.brand, h.category, _num(h.price), h.image_url or "")
        if regions:
            row = row[:-1] + (",".join(map(str, h.region)) if h.region else "", row[-1])
        lines.append(" ".join(_fit(v, w) for v, (_, w) in zip(row, cols)).rstrip())
        if h.explain is not None:
            for s in h.explain.retrievers:
                lines.append(f"      {s.retriever:<16} raw {_num(s.raw) or '-':>8}  normalized "
                             f"{_num(s.normalized) or '-':>8}  rank {s.rank or '-'}")
            if h.explain.boosts:
                lines.append(f"      boosts: {', '.join(h.explain.boosts)}")
            lines.append(f"      final {h.explain.final:.4f} ({h.explain.fusion})")
    if not result.hits:
        lines.append("(no results)")
    f = result.facets
    if f:
        lines.append("")
        if f.brand:
            lines.append("brand:    " + "  ".join(f"{b.value} ({b.count})" for b in f.brand))
        for level, buckets in enumerate(f.category):
            if buckets:
                lines.append(f"level {level}:  " + "  ".join(f"{b.value} ({b.count})" for b in buckets))
        if f.price:
            lines.append("price:    " + "  ".join(f"{b.value} ({b.count})" for b in f.price if b.count))
    u = result.understanding
    if u is not None and (u.brands or u.categories):
        lines.append("")
        lines.append("understood: " + ", ".join([*(f"brand {b}" for b in u.brands),
                                                  *(f"category {c.path} ({c.source})" for c in u.categories)]))
    if u is not None:
        if u.original and u.text != " ".join(u.original.split()):
            lines.append(f"normalized: {u.text}")
        for r in u.pinyin:
            lines.append(f"pinyin: {r.surface} -> {' | '.join(r.phrases())} ({r.kind})")
        for m in u.synonyms:
            lines.append(f"synonyms: {m.surface} {'->' if m.replace else '~'} "
                         f"{', '.join(' '.join(a) for a in m.alternatives)}")
    if result.did_you_mean:
        lines.append(f"did you mean: {result.did_you_mean}")
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


@click.command()
@click.argument("query", required=False)
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Query photo (repeatable: several photos of one product).")
@click.option("--index", "index_name", default="products", show_default=True, envvar="CMSEARCH_INDEX",
              help="Product index to search.")
@click.option("--profile", default="hybrid_minmax", show_default=True,
              help=f"Shipped profile ({', '.join(shipped_profiles())}) or a profile JSON file.")
@click.option("--brand", multiple=True, help="Only this brand (repeatable: any of them).")
@click.option("--category", multiple=True, help="Only this category: a path (a>b) or a name (repeatable).")
@click.option("--price-min", type=float, default=None)
@click.option("--price-max", type=float, default=None)
@click.option("--attr", multiple=True, help="Attribute filter key=value (repeatable).")
@click.option("--facet", "facets", multiple=True, type=click.Choice(FACETS), help="Facets to show (repeatable).")
@click.option("--size", default=10, show_default=True)
@click.option("--offset", default=0, show_default=True)
@click.option("--regions", is_flag=True,
              help="Shop the look: cut the one --image (a scene) into regions, search each, and list the "
                   "products found with the region (box, in pixels) that found each.")
@click.option("--region-grids", default=None, metavar="1,2,3",
              help="With --regions: the n x n grids to cut (default: the shipped choice).")
@click.option("--region-merge", type=click.Choice(MERGES), default=None,
              help="With --regions: merge per product by best score (max) or reciprocal-rank sum (rrf).")
@click.option("--region-overlap", type=float, default=None, metavar="0.25",
              help="With --regions: the share of a window its neighbour overlaps (0 to below 1).")
@click.option("--explain", is_flag=True,
              help="Show every retriever's raw and normalized score, the boosts, and where the time went.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--aliases", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Brand/category alias file (JSON, see analysis/vocabulary.py).")
@click.option("--synonyms", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Synonym file (Solr format: 'a, b, c' or 'a => b') for the lexical retriever.")
@space_options
@click.option("--no-models", is_flag=True, help="Do not load encoders: lexical search only.")
@click.option("--ocr", is_flag=True, help="Read text off the query photo to recognize its brand (rapidocr).")
@connection_options
def search(conn, query: str | None, images: tuple[Path, ...], index_name: str, profile: str, brand: tuple[str, ...],
           category: tuple[str, ...], price_min: float | None, price_max: float | None, attr: tuple[str, ...],
           facets: tuple[str, ...], size: int, offset: int, regions: bool, region_grids: str | None,
           region_merge: str | None, region_overlap: float | None, explain: bool, as_json: bool, aliases: Path | None,
           synonyms: Path | None, models_dir: Path | None, heads_dir: str | None, allow_other_space: bool,
           no_models: bool,
           ocr: bool) -> None:
    """Search the product index by QUERY text and/or --image photos."""
    t0 = time.perf_counter()
    try:
        spec = _region_spec(regions, region_grids, region_merge, region_overlap, images, no_models)
        prof = load_profile(profile)
        table = AliasTable.load(aliases) if aliases else None
        syn = SynonymTable.load(synonyms) if synonyms else None
        price = NumberRange(price_min, price_max) if price_min is not None or price_max is not None else None
        request = SearchRequest(
            text=query, images=tuple(QueryImage.from_path(p) for p in images),
            filters=Filters(brand=brand, category=category, price=price, attribute=attr),
            facets=facets, size=size, offset=offset, explain=explain)
    except (RequestError, ProfileError, AliasError, SynonymError) as exc:
        raise click.UsageError(str(exc)) from None
    timings: dict[str, float] = {}
    try:
        client = _TimedClient(conn.client())
        space, reader = (None, None) if no_models else open_space(client, index_name, models_dir, heads_dir, ocr=ocr)
        searcher = Searcher(client, prof, space if spec is not None else None, index=index_name, aliases=table,
                            ocr=reader, allow_other_space=allow_other_space, synonyms=syn)
        if space is not None:   # the space is checked against the index before anything is encoded
            Searcher(client, "bm25", space, index=index_name, allow_other_space=allow_other_space).index_space()
        searcher.vocabulary()
        timings["load"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if spec is not None:   # regions are cut and embedded inside the region search
            t2, client.seconds = time.perf_counter(), 0.0
            result = searcher.search_regions(request, spec)
        else:
            if space is not None:
                request = encode(request, space, reader)
            timings["encode"] = time.perf_counter() - t1
            t2, client.seconds = time.perf_counter(), 0.0
            result = searcher.search(request)
        timings["engine"] = client.seconds
        timings["encode+build+merge" if spec is not None else "build+fuse"] = (
            time.perf_counter() - t2 - client.seconds)
    except (RequestError, SynonymError) as exc:   # an undecodable photo, the profile's synonym file
        raise click.UsageError(str(exc)) from None
    except BuildError as exc:            # e.g. a photo for a text-only profile, or no heads for it
        extra = "; ".join(getattr(space, "problems", ()) or ())
        raise click.UsageError(f"{exc}{' (' + extra + ')' if extra else ''}") from None
    except SearchError as exc:
        raise click.ClickException(hint(conn, exc) or conn.redact(str(exc))) from None
    except (OpenSearchException, TransportError, OSError) as exc:
        raise fail(conn, exc) from None
    if not as_json:
        echo_problems(space)
    if as_json:
        out = result.to_dict()
        if explain:
            out["timings_ms"] = {k: round(v * 1000, 1) for k, v in timings.items()}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        click.echo(render(result))
        if explain:
            loaded = ", ".join(space.loaded()) if space is not None else "nothing"
            click.echo("time: " + " · ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
                       + f" (models opened: {loaded})")


def _region_spec(regions: bool, grids: str | None, merge: str | None, overlap: float | None,
                 images: tuple[Path, ...], no_models: bool) -> RegionSpec | None:
    """The --regions settings, or None; a bad combination is a RequestError (a usage error)."""
    if not regions:
        if grids is not None or merge is not None or overlap is not None:
            raise RequestError("--region-grids, --region-merge and --region-overlap go with --regions")
        return None
    if len(images) != 1:
        raise RequestError(f"--regions takes exactly one --image (a scene photo), got {len(images)}")
    if no_models:
        raise RequestError("--regions needs the models to embed the regions; drop --no-models")
    kw: dict = {}
    if grids is not None:
        try:
            kw["grids"] = tuple(int(g) for g in grids.split(",") if g.strip())
        except ValueError:
            raise RequestError(f"--region-grids takes comma-separated integers like 1,2,3, got {grids!r}") from None
    if merge is not None:
        kw["merge"] = merge
    if overlap is not None:
        kw["overlap"] = overlap
    return RegionSpec(**kw)
