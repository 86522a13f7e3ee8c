"""Pinyin, initials, traditional characters, homophone and Latin typos, synonyms: on a real node.

A small generated catalog (dresses, sneakers, T-shirts, short sleeves, running shoes) is made
into documents by the ingest enricher and searched with the ``bm25`` profile, so each kind of
query is matched by the index fields and query clauses this project builds, not by vectors.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import mappings
from analysis import Tokenizer
from analysis.synonyms import SynonymTable
from engine.vocabulary import read_vocabulary
from mappings import VectorDims
from plugin_ingest.enrich import Enricher, build_vocabulary, category_value
from plugin_ingest.schema import validate
from query_builder import Searcher, SearchRequest

pytestmark = pytest.mark.engine

DIMS = VectorDims(shared=8, image_feature=8)
COLORS = ["红色", "黑色", "白色", "蓝色"]
KINDS = [  # id prefix, title word, brand, category
    ("dress", "连衣裙", "Lotus", ["服装", "连衣裙"]),
    ("shoe", "运动鞋", "Nike", ["鞋", "运动鞋"]),
    ("tee", "T恤", "Uniqlo", ["服装", "T恤"]),
    ("short", "短袖 衬衫", "Uniqlo", ["服装", "衬衫"]),
    ("run", "跑鞋", "Adidas", ["鞋", "跑鞋"]),
    ("bag", "双肩包", "Northwind", ["包", "双肩包"]),
]


def catalog() -> list[dict]:
    out = []
    for prefix, word, brand, cat in KINDS:
        for i, color in enumerate(COLORS):
            out.append({"id": f"{prefix}{i}", "title": f"{color} {word} 夏季 新款", "brand": brand, "category": cat})
    return out


@pytest.fixture(scope="module")
def shop(os_client, request):
    import uuid

    index = f"zh-query-{uuid.uuid4().hex[:10]}"
    products = [validate(r) for r in catalog()]
    vocab = build_vocabulary([p.brand for p in products], [category_value(p.category) for p in products], None)
    enricher = Enricher(Tokenizer(vocab.words()))
    os_client.indices.create(index=index, body=mappings.product_index_body(DIMS))
    lines = []
    for p in products:
        lines += [{"index": {"_index": index, "_id": p.id}}, enricher.fields(p)]
    resp = os_client.bulk(body=lines, refresh=True)
    assert not resp["errors"], resp
    request.addfinalizer(lambda: os_client.indices.delete(index=index, ignore_unavailable=True))
    return index


def ids(result) -> list[str]:
    return [h.id for h in result.hits]


def kinds_of(result, n: int | None = None) -> set[str]:
    """The kinds among the first ``n`` hits (all of them by default)."""
    return {h.id.rstrip("0123456789") for h in result.hits[:n]}


def search(os_client, index, text, profile="bm25", **kw):
    return Searcher(os_client, profile, index=index, **kw).search(SearchRequest(text=text, size=10, explain=True))


def test_the_index_vocabulary_holds_its_words(os_client, shop):
    vocab = read_vocabulary(os_client, shop)
    assert vocab.terms["连衣裙"] == 4 and vocab.terms["nike"] == 4 and "lotus" in vocab.terms


@pytest.mark.parametrize("query", ["lianyiqun", "lian yi qun", "LianYiQun", "lyq"])
def test_pinyin_and_initials_find_dresses(os_client, shop, query):
    r = search(os_client, shop, query)
    assert kinds_of(r) == {"dress"} and len(r.hits) == 4, ids(r)
    assert r.understanding.pinyin


def test_initials_of_sneakers(os_client, shop):
    r = search(os_client, shop, "ydx")
    assert kinds_of(r) == {"shoe"} and len(r.hits) == 4


def test_brand_plus_pinyin(os_client, shop):
    r = search(os_client, shop, "nike yundongxie")
    assert kinds_of(r) == {"shoe"} and len(r.hits) == 4
    assert [run.surface for run in r.understanding.pinyin] == ["yundongxie"]   # nike is a word of the index


def test_brand_name_is_not_read_as_pinyin(os_client, shop):
    r = search(os_client, shop, "nike")
    assert not r.understanding.pinyin and kinds_of(r) == {"shoe"}


def test_traditional_characters_match_simplified_titles(os_client, shop):
    r = search(os_client, shop, "連衣裙")
    # the bm25 profile also retrieves the category's siblings (boosts_retrieve), below the words' matches
    assert r.understanding.text == "连衣裙" and kinds_of(r, 4) == {"dress"}
    r = search(os_client, shop, "紅色 運動鞋")
    assert ids(r)[0] == "shoe0"


def test_homophone_typo_is_corrected_with_did_you_mean(os_client, shop):
    r = search(os_client, shop, "连衣群")
    assert r.did_you_mean == "连衣裙"
    assert kinds_of(r) == {"dress"} and len(r.hits) == 4
    assert r.to_dict()["did_you_mean"] == "连衣裙"
    assert r.to_dict()["understanding"]["corrections"] == [{"kind": "homophone", "wrong": "连衣群", "right": "连衣裙"}]


def test_latin_typo_matches_fuzzily(os_client, shop):
    r = search(os_client, shop, "Nkie")
    assert kinds_of(r) == {"shoe"} and len(r.hits) == 4
    assert r.did_you_mean == "nike"


def test_a_correct_query_gets_no_correction(os_client, shop):
    r = search(os_client, shop, "红色 连衣裙")
    assert r.did_you_mean is None and ids(r)[0] == "dress0"


LEXICAL_ONLY = {"name": "lex", "retrievers": ["lexical"]}   # words only: no category siblings retrieved


def test_synonyms_from_a_file(os_client, shop, tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("# test synonyms\nT恤, 短袖\n运动鞋, 跑鞋\n", encoding="utf-8")
    plain = search(os_client, shop, "运动鞋", LEXICAL_ONLY)
    assert kinds_of(plain) == {"shoe"}
    r = search(os_client, shop, "运动鞋", LEXICAL_ONLY, synonyms=SynonymTable.load(path))
    assert kinds_of(r) == {"shoe", "run"} and len(r.hits) == 8
    assert r.to_dict()["understanding"]["synonyms"][0]["alternatives"] == ["跑鞋"]
    r = search(os_client, shop, "短袖", LEXICAL_ONLY, synonyms=SynonymTable.load(path))
    assert kinds_of(r) == {"tee", "short"}


def test_profile_names_a_synonym_file(os_client, shop, tmp_path):
    (tmp_path / "syn.txt").write_text("运动鞋 => 跑鞋\n", encoding="utf-8")
    prof = tmp_path / "p.json"
    prof.write_text('{"name": "syn", "retrievers": ["lexical"], "synonyms": "syn.txt"}', encoding="utf-8")
    r = search(os_client, shop, "运动鞋", profile=str(prof))
    assert kinds_of(r) == {"run"}   # explicit: replaced


def test_nonsense_latin_finds_nothing(os_client, shop):
    r = search(os_client, shop, "qzxv wprt")
    assert r.hits == ()


def test_cli_prints_did_you_mean_and_pinyin(os_client, shop, tmp_path):
    from cmsearch.cmd_search import search as search_cmd

    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])
    base = ["--url", url, "--index", shop, "--no-models", "--profile", "bm25"]
    out = CliRunner().invoke(search_cmd, ["连衣群", *base])
    assert out.exit_code == 0, out.output
    assert "did you mean: 连衣裙" in out.output
    out = CliRunner().invoke(search_cmd, ["ydx", *base])
    assert out.exit_code == 0 and "pinyin: ydx -> y d x (initials)" in out.output, out.output
    bad = tmp_path / "bad.txt"
    bad.write_text("a, => b\n", encoding="utf-8")
    out = CliRunner().invoke(search_cmd, ["x", *base, "--synonyms", str(bad)])
    assert out.exit_code == 2 and "line 1" in out.output and "Traceback" not in out.output
