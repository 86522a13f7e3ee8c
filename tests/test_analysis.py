"""Normalization, segmentation and brand/category recognition shared by ingest and query."""
from __future__ import annotations

import json
import logging

import jieba
import pytest

from analysis import (AliasError, AliasTable, Tokenizer, Vocabulary, category_ancestors, category_parent, fold_key,
                      normalize_brand, normalize_text)
from analysis import tokenize as tokenize_mod


# --- normalize_text ---------------------------------------------------------------------
@pytest.mark.parametrize("raw, want", [
    ("ＳＫ－ＩＩ　神仙水", "sk-ii 神仙水"),            # full-width Latin, dash and ideographic space
    ("ＡＨＣ１２３", "ahc123"),
    ("Estée  LAUDER", "estee lauder"),              # accents and case folded, spaces collapsed
    ("a\u200bb\ufeffc", "abc"),                     # zero-width space and BOM removed
    ("line1\nline2\t\r end ", "line1 line2 end"),    # control whitespace becomes one space
    ("红色，椅子！", "红色,椅子!"),                   # full-width punctuation to half-width
    ("が", "が"),                                   # kana keeps its voicing mark
    ("", ""),
    (None, ""),
])
def test_normalize_text(raw, want):
    assert normalize_text(raw) == want


def test_fold_key_ignores_joiners_and_spacing():
    assert fold_key("SK-II") == fold_key("sk ii") == fold_key("skii") == "skii"
    assert fold_key("L'Oréal") == "loreal"


# --- Tokenizer --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    return Tokenizer(["sk-ii", "小棕瓶", "神仙水"])


def test_chinese_is_segmented_into_words(tok):
    assert tok.tokens("红色椅子") == ["红色", "椅子"]
    assert tok.tokens("北欧红色实木椅子") == ["北欧", "红色", "实木", "椅子"]


def test_latin_words_and_numbers_stay_whole(tok):
    assert tok.tokens("iPhone15 Pro 红色") == ["iphone15", "pro", "红色"]
    assert tok.tokens("3.5mm耳机") == ["3.5mm", "耳机"]
    assert tok.tokens("Wi-Fi 路由器") == ["wi-fi", "路由器"]
    assert tok.tokens("售价3,000元") == ["售价", "3000", "元"]
    assert tok.tokens("C++ 入门") == ["c++", "入门"]


def test_punctuation_and_whitespace_are_dropped(tok):
    assert tok.tokens("【官方正品】 ，。！！  ") == ["官方", "正品"]
    assert tok.tokens("  ...  ") == []
    assert tok.tokens(None) == []


def test_user_words_stay_whole(tok):
    assert tok.tokens("SK-II神仙水230ml") == ["sk-ii", "神仙水", "230ml"]
    assert Tokenizer(["小棕瓶"], hmm=False).tokens("雅诗兰黛小棕瓶精华") == ["雅诗兰黛", "小棕瓶", "精华"]
    assert Tokenizer(hmm=False).tokens("雅诗兰黛小棕瓶精华") == ["雅诗兰黛", "小", "棕", "瓶", "精华"]


def test_user_words_do_not_leak_into_jiebas_global_tokenizer(tok):
    tok.tokens("神仙水")
    assert tok._engine().FREQ["神仙水"] > 0
    assert jieba.dt.FREQ.get("神仙水", 0) == 0
    assert tok._engine() is not jieba.dt


def test_index_text_adds_inner_dictionary_words(tok):
    assert tok.field_text("人体工学办公椅") == "人体 工学 人体工学 办公 办公椅"
    assert tok.query_text("人体工学办公椅") == "人体工学 办公椅"
    # a query for the shorter word meets the indexed longer one
    assert set(tok.tokens("办公")) <= set(tok.field_text("人体工学办公椅").split())


def test_upper_case_dictionary_words_survive_case_folding(tok):
    assert tok.tokens("T恤男") == ["t恤", "男"]


def test_dictionary_loads_lazily_and_once():
    t = Tokenizer(["某某牌"])
    assert t._jieba is None                     # constructing costs nothing
    t.tokens("某某牌")
    assert t._jieba is not None
    base = tokenize_mod._base_dictionary()
    assert tokenize_mod._base_dictionary() is base   # shared by every Tokenizer
    assert "某某牌" not in base[0] or base[0]["某某牌"] == 0


def test_with_words_returns_a_new_tokenizer(tok):
    more = tok.with_words(["超级新词汇"])
    assert "超级新词汇" in more.user_words and "超级新词汇" not in tok.user_words


@pytest.mark.parametrize("text, want", [
    ("кровать белая", ["кровать", "белая"]),                       # Cyrillic
    ("Кровать БЕЛАЯ двуспальная", ["кровать", "белая", "двуспальная"]),
    ("из-за угла", ["из-за", "угла"]),                             # an inner hyphen stays
    ("Ελληνικά λέξη", ["ελληνικά", "λέξη"]),                       # Greek
    ("שולחן עץ", ["שולחן", "עץ"]),                                 # Hebrew
    ("צה״ל", ["צה״ל"]),                                            # gershayim inside a word
    ("طاولة خشب", ["طاولة", "خشب"]),                               # Arabic
    ("كتابّ", ["كتابّ"]),                                           # with its diacritic (shadda)
    ("원목 책상", ["원목", "책상"]),                                   # Hangul
    ("प्रकाश दीपक", ["प्रकाश", "दीपक"]),                              # Devanagari keeps its vowel signs
    ("ソファベッド", ["ソファベッド"]),                               # a katakana run is one word
    ("ノートパソコン", ["ノートパソコン"]),                           # with its prolonged-sound mark
    ("東京タワー", ["东京", "タワー"]),                               # Han to jieba (t2s folds 東), kana beside it
    ("白いソファ", ["白", "い", "ソファ"]),                           # hiragana and katakana apart
    ("ｿﾌｧ", ["ソファ"]),                                           # half-width kana: NFKC first
    ("красный t恤 3.5mm", ["красный", "t恤", "3.5mm"]),             # mixed scripts, each its own way
    ("iPhoneкейс", ["iphone", "кейс"]),
    ("кот- пёс!", ["кот", "пёс"]),                                 # a trailing hyphen is punctuation
])
def test_other_scripts_are_split_into_words_not_letters(tok, text, want):
    assert tok.tokens(text) == want
    # ingest writes the same words, so the whitespace analyzer meets them
    assert tok.field_text(text).split() == want


def test_a_two_word_cyrillic_query_counts_two_words(tok):
    from query_builder import SearchRequest, load_profile
    from query_builder.understand import understand

    profile = load_profile("hybrid_minmax")
    u = understand(SearchRequest(text="кровать белая"), profile, tok)
    assert u.tokens == ("кровать", "белая")
    assert len(u.tokens) < profile.verbose_query_words


def test_chinese_and_latin_segment_as_before_the_script_split(tok):
    # the fast path: a chunk with only Han, Latin, digits and punctuation goes to jieba whole
    assert tokenize_mod._script_runs("红色椅子iphone15,3.5mm") == [("红色椅子iphone15,3.5mm", False)]
    assert tok.tokens("【官方正品】SK-II神仙水230ml") == ["官方", "正品", "sk-ii", "神仙水", "230ml"]


def test_jieba_logging_is_silenced(capsys):
    assert logging.getLogger("jieba").getEffectiveLevel() >= logging.WARNING
    Tokenizer(["另一个词"]).tokens("另一个词")
    assert "Building prefix dict" not in capsys.readouterr().err


# --- aliases and brands -----------------------------------------------------------------
ALIASES = {
    "brands": {"SK-II": ["sk2", "skii", "神仙水"], "Estee Lauder": ["雅诗兰黛"], "ahc": ["AHC", "爱和纯"]},
    "categories": {"家居>家具>椅子": ["chair", "凳子"], "手机": ["phone", "cellphone"]},
}


@pytest.fixture(scope="module")
def aliases():
    return AliasTable.from_dict(ALIASES)


def test_alias_file_roundtrip(tmp_path, aliases):
    p = tmp_path / "aliases.json"
    p.write_text(json.dumps(ALIASES, ensure_ascii=False), encoding="utf-8")
    loaded = AliasTable.load(p)
    assert loaded.to_dict() == aliases.to_dict()
    assert loaded.brands["sk-ii"] == ("sk2", "skii", "神仙水")


@pytest.mark.parametrize("bad, msg", [
    ({"brand": {}}, "unknown keys"),
    ({"brands": {"x": [1, 2]}}, "list of strings"),
    ({"brands": ["x"]}, "must be an object"),
    ([], "JSON object"),
])
def test_bad_alias_files_are_rejected(bad, msg):
    with pytest.raises(AliasError, match=msg):
        AliasTable.from_dict(bad)


def test_normalize_brand_maps_spellings_to_one_value(aliases):
    assert normalize_brand("SK II", aliases) == "sk-ii"
    assert normalize_brand("ＳＫ２", aliases) == "sk-ii"
    assert normalize_brand("雅诗兰黛", aliases) == "estee lauder"
    assert normalize_brand("  Oatly ", aliases) == "oatly"          # unknown: just normalized
    assert normalize_brand("sk2", {"sk-ii": ["sk2"]}) == "sk-ii"     # a plain mapping works too
    assert normalize_brand(None) == ""


# --- Vocabulary -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vocab(aliases):
    return Vocabulary(brands=["sk-ii", "estee lauder", "ahc", "兰蔻", "lg", "apple"],
                      category_paths=["家居>家具>椅子", "家居>家具>桌子", "数码>手机", "数码>手机配件>手机壳", "家居>灯"],
                      aliases=aliases)


@pytest.mark.parametrize("text, brands, cats", [
    ("雅诗兰黛小棕瓶", ("estee lauder",), ()),
    ("Estee Lauder serum", ("estee lauder",), ()),
    ("esteelauder", ("estee lauder",), ()),
    ("ＡＨＣ眼霜", ("ahc",), ()),
    ("sk2 神仙水", ("sk-ii",), ()),
    ("红色 椅子", (), ("家居>家具>椅子",)),
    ("red chair", (), ("家居>家具>椅子",)),
    ("兰蔻 手机壳", ("兰蔻",), ("数码>手机配件>手机壳",)),   # longest match: 手机壳 over 手机
    ("台灯", (), ("家居>灯",)),                              # one-character category names count
    ("algorithm", (), ()),                                  # lg is not found inside a Latin word
    ("lg 显示器", ("lg",), ()),
])
def test_find_mentions(vocab, text, brands, cats):
    m = vocab.find(text)
    assert m.brands == brands and m.categories == cats


def test_mentions_in_other_scripts_sit_on_word_boundaries():
    v = Vocabulary(brands=["лг", "ソニー"], category_paths=["мебель>кровать"])
    assert v.find("телевизор лг").brands == ("лг",)
    assert v.find("алгоритм").brands == ()                  # not inside a Cyrillic word
    assert v.find("кровать белая").categories == ("мебель>кровать",)
    assert v.find("ソニーのテレビ").brands == ("ソニー",)      # Japanese needs no spaces


def test_mention_spans_point_into_the_normalized_text(vocab):
    m = vocab.find("买 雅诗兰黛")
    (span,) = m.spans
    assert normalize_text("买 雅诗兰黛")[span.start:span.end] == "雅诗兰黛" and span.kind == "brand"


def test_vocabulary_keeps_indexed_spellings_as_values(aliases):
    v = Vocabulary(brands=["雅诗兰黛", "estee lauder"], category_paths=["Fruit>Apple"], aliases=aliases)
    # both spellings are in the index, both are boosted/filtered
    assert set(v.find("Estée Lauder").brands) == {"estee lauder", "雅诗兰黛"}
    assert v.brand_values("雅诗兰黛") == ("estee lauder", "雅诗兰黛")
    # category values are the paths as indexed, found by their normalized names
    assert v.find("green apple").categories == ("Fruit>Apple",)
    assert v.categories_named("fruit>apple") == ("Fruit>Apple",)
    assert v.categories_named("Vegetables") == ("Vegetables",)   # unknown: as given


def test_category_helpers():
    assert category_ancestors("a>b>c") == ["a", "a>b", "a>b>c"]
    assert category_parent("a>b>c") == "a>b" and category_parent("a") is None


def test_vocabulary_words_feed_the_tokenizer(vocab):
    words = vocab.words()
    assert "sk-ii" in words and "雅诗兰黛" in words and "estee lauder" not in words
    assert Tokenizer(words).tokens("sk2神仙水") == ["sk2", "神仙水"]


def test_analysis_does_no_cluster_io():
    """analysis/ sits at the bottom: it imports no client and no higher layer, and the vocabulary
    is handed in (read at the cluster edge by engine.vocabulary)."""
    import ast
    from pathlib import Path

    import analysis

    higher = ("opensearchpy", "engine", "query_builder", "plugin_ingest", "evaluation", "cmsearch", "requests",
              "urllib", "http", "socket")
    for path in sorted(Path(analysis.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not [n for n in names if n.split(".")[0] in higher], (path.name, names)
            if isinstance(node, ast.arg):
                assert node.arg != "client", (path.name, node.lineno)
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("msearch", "transport", "indices"), (path.name, node.lineno)
    assert not hasattr(Vocabulary, "from_index") and not hasattr(Vocabulary, "refreshed")
