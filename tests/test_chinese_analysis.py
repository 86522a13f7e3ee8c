"""Unit tests of the Chinese query helpers: normalization, pinyin, spelling, synonyms, the lexical clause."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from analysis import Tokenizer, Vocabulary, normalize_text
from analysis.normalize import to_simplified
from analysis.pinyin import FULL, INITIALS, find_pinyin, initials_text, pinyin_text, segment
from analysis.spelling import Speller
from analysis.synonyms import SynonymError, SynonymTable
from plugin_ingest.enrich import Enricher
from plugin_ingest.schema import validate
from query_builder import ProfileError, SearchRequest, load_profile
from query_builder.profile import LexicalSpec
from query_builder.bodies import lexical_query
from query_builder.understand import understand
from mappings import fields as F


# --- normalization -----------------------------------------------------------------------
@pytest.mark.parametrize("trad, simp", [("連衣裙", "连衣裙"), ("運動鞋", "运动鞋"), ("雅詩蘭黛", "雅诗兰黛"),
                                        ("護膚品 乾燥", "护肤品 干燥"), ("香港直播代購", "香港直播代购")])
def test_traditional_to_simplified(trad, simp):
    assert normalize_text(trad) == simp


def test_phrases_convert_before_characters_and_simplified_text_is_unchanged():
    assert to_simplified("乾隆") == "乾隆"          # a name: the phrase table keeps it
    title = "韩国ahc黄金套盒正品蜗牛玻尿酸水乳24K精华套装"
    assert to_simplified(title) == title


def test_full_width_and_case():
    assert normalize_text("ＳＫ－ＩＩ　神仙水") == "sk-ii 神仙水"
    assert normalize_text("ＮＩＫＥ運動鞋") == "nike运动鞋"


def test_tokens_of_traditional_and_simplified_agree():
    tk = Tokenizer()
    assert tk.tokens("紅色連衣裙") == tk.tokens("红色连衣裙")


# --- pinyin ------------------------------------------------------------------------------
def test_pinyin_and_initials_of_text():
    assert pinyin_text("连衣裙") == "lian yi qun"
    assert pinyin_text("T恤 nike运动鞋") == "t xu nike yun dong xie"
    assert initials_text("运动鞋 nike") == "y d x"
    assert pinyin_text("绿色") == "lv se"
    # polyphones read by phrase, the same for every caller
    assert pinyin_text("银行") == "yin hang" and pinyin_text("行走") == "xing zou"
    assert pinyin_text("連衣裙") == pinyin_text("连衣裙")


def test_segmentation():
    assert segment("lianyiqun")[0] == ("lian", "yi", "qun")
    assert segment("xi'an") == [("xi", "an")]
    assert segment("xian")[0] == ("xian",)
    assert segment("fangan")[0] == ("fan", "gan")       # the consonant starts the next syllable
    for english in ("wireless", "lotus", "dress", "iphone", "serum", "cream", "skii"):
        assert segment(english) == [], english


def test_recognizer_runs_and_negatives():
    runs = find_pinyin(["lian", "yi", "qun"])
    assert len(runs) == 1 and runs[0].kind == FULL and runs[0].phrases()[0] == "lian yi qun"
    runs = find_pinyin(["nike", "yundongxie"], known={"nike"})
    assert [(r.start, r.end, r.phrases()[0]) for r in runs] == [(1, 2, "yun dong xie")]
    assert find_pinyin(["ydx"])[0].kind == INITIALS
    assert find_pinyin(["红色", "lianyiqun"])[0].start == 1
    # English words, brands, one syllable, vowels in "initials": not pinyin
    assert find_pinyin(["wireless", "dress"]) == ()
    assert find_pinyin(["nike"], known={"nike"}) == ()
    assert find_pinyin(["china"], known={"china"}) == ()
    assert find_pinyin(["man"]) == () and find_pinyin(["long"]) == ()
    assert find_pinyin(["ahc"]) == () and find_pinyin(["sk2"]) == ()
    assert find_pinyin(["bcdfghjklmnpq"]) == ()   # too long to be initials


def test_enricher_writes_pinyin_initials_and_terms():
    tk = Tokenizer(["lotus"])
    doc = Enricher(tk).fields(validate({"id": "a", "title": "深色 連衣裙", "brand": "Lotus",
                                        "category": ["服装", "连衣裙"]}))
    assert doc[F.PINYIN] == ["shen se lian yi qun", "lotus", "fu zhuang", "lian yi qun"]
    assert doc[F.PINYIN_INITIALS] == ["s s l y q", "f z", "l y q"]
    assert "连衣裙" in doc[F.TERMS] and "lotus" in doc[F.TERMS]


def test_the_text_hash_changes_with_the_analysis():
    from plugin_ingest import enrich

    p = validate({"id": "a", "title": "连衣裙"})
    before = Enricher(Tokenizer()).content_hash(p).text
    old, enrich.ENRICH_VERSION = enrich.ENRICH_VERSION, "enrich-test"
    try:
        assert Enricher(Tokenizer()).content_hash(p).text != before
    finally:
        enrich.ENRICH_VERSION = old


# --- spelling ----------------------------------------------------------------------------
SPELLER = Speller({"连衣裙": 40, "连衣": 40, "运动鞋": 30, "nike": 25, "nice": 2, "wireless": 9, "面霜": 5})


def test_homophone_correction():
    [c] = SPELLER.homophones("连衣群")
    assert (c.kind, c.wrong, c.right) == ("homophone", "连衣群", "连衣裙")
    assert SPELLER.homophones("连衣裙") == []                 # an indexed word
    assert SPELLER.homophones("运东鞋")[0].right == "运动鞋"
    assert SPELLER.homophones("笔记本电脑") == []              # reads like nothing indexed


def test_latin_correction():
    assert SPELLER.latin("nkie").right == "nike"             # a swap is one edit; the commoner word wins
    assert SPELLER.latin("wireles").right == "wireless"
    assert SPELLER.latin("nike") is None                     # known
    assert SPELLER.latin("nik") is None                      # too short
    assert SPELLER.latin("mike") is None                     # the first letter is kept


# --- synonyms ----------------------------------------------------------------------------
def test_synonym_parsing():
    t = SynonymTable.parse("# c\nT恤, 短袖 , tee\n\nsk2, skii => sk-ii\n运动鞋,跑鞋 # trailing\n")
    assert len(t) == 3
    assert t.rules[0].sources == ("t恤", "短袖", "tee") and not t.rules[0].explicit
    assert t.rules[1].sources == ("sk2", "skii") and t.rules[1].targets == ("sk-ii",) and t.rules[1].explicit
    for bad, why in (("a, , b", "empty"), ("a => ", "both sides"), ("a => b => c", "more than once"),
                     ("alone", "two or more")):
        with pytest.raises(SynonymError, match=why):
            SynonymTable.parse(bad, "f.txt")


def test_synonym_file_errors_name_the_file_and_line(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a, b\nc =>\n", encoding="utf-8")
    with pytest.raises(SynonymError, match=r"s.txt line 2"):
        SynonymTable.load(p)
    with pytest.raises(SynonymError, match="cannot be read"):
        SynonymTable.load(tmp_path / "missing.txt")


def test_synonym_expansion_in_understanding():
    tk = Tokenizer()
    t = SynonymTable.parse("T恤, 短袖\n运动鞋, 跑鞋\nsk2 => sk-ii\n")
    prof = load_profile("bm25")
    u = understand(SearchRequest(text="红色 运动鞋"), prof, tk, None, t)
    assert u.tokens == ("红色", "运动鞋") and u.synonym_variants == (("红色", "跑鞋"),)
    u = understand(SearchRequest(text="ＳＫ2 面霜"), prof, tk, None, t)
    assert u.tokens == ("sk-ii", "面霜") and u.synonyms[0].replace
    u = understand(SearchRequest(text="t恤"), prof, tk, None, t)
    assert u.synonym_variants == (("短袖",),)


# --- the lexical clause ------------------------------------------------------------------
VOCAB = Vocabulary(brands=["nike"], category_paths=["鞋>运动鞋"], terms={"运动鞋": 3, "nike": 3, "连衣裙": 2})


def _lexical(text: str, profile="bm25") -> dict:
    prof = load_profile(profile)
    u = understand(SearchRequest(text=text), prof, Tokenizer(VOCAB.words()), VOCAB)
    return lexical_query(u, prof, "lexical").to_dict()


def test_plain_query_keeps_its_single_multi_match():
    assert list(_lexical("运动鞋")) == ["multi_match"]


def test_pinyin_query_adds_a_phrase_reading():
    body = json.dumps(_lexical("nike yundongxie"), ensure_ascii=False)
    assert '"match_phrase": {"pinyin_full": {"query": "yun dong xie"}}' in body and "reading:pinyin" in body
    body = json.dumps(_lexical("ydx"), ensure_ascii=False)
    assert '"pinyin_initials": {"query": "y d x"}' in body


def test_unknown_latin_word_gets_a_fuzzy_reading_a_known_one_none():
    body = json.dumps(_lexical("nkie"))
    assert '"fuzziness": "AUTO"' in body and '"prefix_length": 1' in body
    assert "fuzziness" not in json.dumps(_lexical("nike"))
    assert "fuzziness" not in json.dumps(_lexical("abc"))        # shorter than four letters


def test_correction_reading_and_did_you_mean():
    prof = load_profile("bm25")
    u = understand(SearchRequest(text="连衣群"), prof, Tokenizer(VOCAB.words()), VOCAB)
    assert u.did_you_mean == "连衣裙" and u.corrected_tokens == ("连衣裙",)
    assert "reading:corrected" in json.dumps(lexical_query(u, prof).to_dict())


def test_profile_switches():
    prof = load_profile({"name": "p", "retrievers": ["lexical"],
                         "lexical": {"pinyin": 0, "fuzzy": False, "corrections": False}})
    u = understand(SearchRequest(text="nkie lianyiqun 连衣群"), prof, Tokenizer(VOCAB.words()), VOCAB)
    assert not u.pinyin and not u.fuzzy_words and u.did_you_mean is None
    assert list(lexical_query(u, prof).to_dict()) == ["multi_match"]
    with pytest.raises(ProfileError, match="fuzzy"):
        load_profile({"name": "p", "retrievers": ["lexical"], "lexical": {"fuzzy": "yes"}})
    with pytest.raises(ProfileError, match="synonyms"):
        load_profile({"name": "p", "retrievers": ["lexical"], "synonyms": ""})


def test_pinyin_spells_indexed_words():
    s = Speller({"玻尿酸": 10, "洗面奶": 8, "洗面": 2, "运动鞋": 2})
    assert s.words_for_pinyin(("bo", "niao", "suan", "xi", "mian", "nai")) == ("玻尿酸", "洗面奶")
    assert s.words_for_pinyin(tuple("bnsxmn"), initials=True) == ("玻尿酸", "洗面奶")
    assert s.words_for_pinyin(("ni", "hao")) == ()


def test_pinyin_reading_searches_the_spelled_words():
    vocab = Vocabulary(brands=["ahc"], terms={"玻尿酸": 10, "洗面奶": 8, "ahc": 3})
    prof = load_profile("bm25")
    u = understand(SearchRequest(text="AHC boniaosuanximiannai"), prof, Tokenizer(vocab.words()), vocab)
    assert u.pinyin_words == ("玻尿酸", "洗面奶")
    assert '"query": "ahc 玻尿酸 洗面奶"' in json.dumps(lexical_query(u, prof).to_dict(), ensure_ascii=False)


def test_known_single_syllables_join_a_pinyin_run():
    runs = find_pinyin(["lan", "kou", "xiao", "hei", "ping"], known={"kou", "nike"})
    assert [(r.start, r.end) for r in runs] == [(0, 5)]
    assert find_pinyin(["nike", "kou"], known={"kou", "nike"}) == ()    # one syllable alone is no run
    s = Speller({"小黑": 50, "瓶眼": 1, "眼霜": 300})
    assert s.words_for_pinyin(("xiao", "hei", "ping", "yan", "shuang")) == ("小黑", "眼霜")


def test_a_pasted_description_gets_no_fuzzy_reading_but_keeps_did_you_mean():
    prof = load_profile("hybrid_minmax")
    assert prof.verbose_query_words == 9
    short = understand(SearchRequest(text="nkie shoes"), prof, Tokenizer(VOCAB.words()), VOCAB)
    assert short.fuzzy_words == ("nkie", "shoes")
    text = "nkie shoes with concealed fittings and a timeless traditional style for running"
    u = understand(SearchRequest(text=text), prof, Tokenizer(VOCAB.words()), VOCAB)
    assert len(u.tokens) >= 9 and u.fuzzy_words == ()
    assert "fuzziness" not in json.dumps(lexical_query(u, prof).to_dict())
    assert u.did_you_mean is not None and "nike" in u.did_you_mean


def test_three_unknown_latin_words_are_another_vocabulary_not_typos():
    """More unknown Latin words than ``lexical.max_fuzzy_words`` (2): no fuzzy reading, since a
    reading that needs each of them to match a title fuzzily almost never finds anything and was
    the slowest lexical search of all; the spelling correction is still offered."""
    prof = load_profile("hybrid_minmax")
    assert prof.lexical.max_fuzzy_words == 2
    tok = Tokenizer(VOCAB.words())
    two = understand(SearchRequest(text="nkie shoes"), prof, tok, VOCAB)
    assert two.fuzzy_words == ("nkie", "shoes")
    three = understand(SearchRequest(text="nkie shoes concealed fittings"), prof, tok, VOCAB)
    assert len(three.tokens) < prof.verbose_query_words and three.fuzzy_words == ()
    assert "fuzziness" not in json.dumps(lexical_query(three, prof).to_dict())
    assert three.did_you_mean is not None and "nike" in three.did_you_mean
    roomy = prof.with_(lexical=replace(prof.lexical, max_fuzzy_words=4))
    assert understand(SearchRequest(text="nkie shoes concealed fittings"), roomy, tok, VOCAB).fuzzy_words == (
        "nkie", "shoes", "concealed", "fittings")
    with pytest.raises(ProfileError, match="max_fuzzy_words"):
        LexicalSpec(max_fuzzy_words=-1)
