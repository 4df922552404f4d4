"""Gopher, C4 and FineWeb filters: every reason triggered by one document and not by another,
scoping for scripts without spaces, and annotate mode."""

from __future__ import annotations

import pytest

from curate.core.document import Document
from filters.registry import available, build_chain, build_filter

CLEAN = (
    "The museum opened its new wing to the public on Saturday morning, and a long queue formed "
    "before the doors were unlocked.\n"
    "Curators spent three years restoring the paintings, which had been stored in a damp "
    "basement since the war.\n"
    "Visitors said that the lighting made the colours look brighter than they remembered from "
    "old photographs.\n\n"
    "A spokesperson explained that the project was funded by local donors and a grant from "
    "the regional council.\n"
    "Schools will be able to book guided tours with the education team from next month.\n"
    "The gallery will stay open until eight o'clock on Thursdays during the summer season."
)


def doc(text: str, **kw) -> Document:
    return Document(id="d", text=text, **kw)


def distinct_words(n: int, width: int = 7) -> list[str]:
    """n different letter-only words (no accidental repeated n-grams)."""
    letters = "bcdfghjklmnpqrstvwz"
    out = []
    for i in range(n):
        w, k = "", i
        for _ in range(4):
            w += letters[k % len(letters)]
            k //= len(letters)
        out.append((w + "ae" * width)[:width])
    return out


def repeated_phrase(n: int, units: int = 30) -> str:
    """An n-word phrase repeated, each copy followed by a different word."""
    phrase = ["ordinary", "common", "phrase", "words", "again"][:n] if n <= 5 else distinct_words(n)
    fillers = distinct_words(units)
    return " ".join(" ".join(phrase + [f]) for f in fillers)


def dup_ngram_text(copies: int = 6) -> str:
    phrase = " ".join(distinct_words(10, width=8)[::-1]).upper()
    filler = distinct_words(150)
    parts = []
    for i in range(copies):
        parts.append(" ".join(filler[i * 25 : (i + 1) * 25]))
        parts.append(phrase)
    return " ".join(parts)


ONE = 1.0  # a fraction limit that can never be exceeded: isolates one rule of a family
TOP_OFF = [[2, ONE], [3, ONE], [4, ONE]]
DUP_OFF = [[n, ONE] for n in range(5, 11)]


def _dup_params(n: int) -> dict:
    return {"top_ngrams": TOP_OFF, "dup_ngrams": [[k, (0.10 if k == n else ONE)] for k in range(5, 11)]}


def _top_params(n: int) -> dict:
    return {"top_ngrams": [[k, (0.16 if k == n else ONE)] for k in (2, 3, 4)], "dup_ngrams": DUP_OFF}


# (filter, reason) -> (parameters, text that triggers the reason, a text that does not:
# {} means the clean article CLEAN)
CASES: dict[tuple[str, str], tuple[dict, str, dict | str]] = {
    ("gopher_quality", "too_few_words"): ({}, "The cat sat on the mat with the dog.", {}),
    ("gopher_quality", "too_many_words"): ({"max_words": 100}, CLEAN, CLEAN.rsplit("\n", 1)[0]),
    ("gopher_quality", "mean_word_length_too_short"): (
        {},
        " ".join(["a", "i", "o", "u"] * 12 + ["the", "and", "of", "to"]),
        {},
    ),
    ("gopher_quality", "mean_word_length_too_long"): (
        {},
        " ".join(w * 2 for w in distinct_words(55, width=7)) + " the and of",
        {},
    ),
    ("gopher_quality", "too_many_hashes"): ({}, CLEAN + " #news" * 20, {}),
    ("gopher_quality", "too_many_ellipses"): ({}, CLEAN + " ..." * 20, {}),
    ("gopher_quality", "too_many_bullet_lines"): (
        {},
        "\n".join(f"- the item {w} is listed with the others" for w in distinct_words(20)),
        {},
    ),
    ("gopher_quality", "too_many_ellipsis_lines"): (
        {},
        CLEAN + "\n" + "\n".join(f"And then the story of {w} went on and on..." for w in distinct_words(6)),
        {},
    ),
    ("gopher_quality", "too_few_alpha_words"): ({}, CLEAN + " " + " ".join(str(1000 + i) for i in range(150)), {}),
    ("gopher_quality", "too_few_stop_words"): ({}, " ".join(w.capitalize() for w in distinct_words(60)) + ".", {}),
    ("gopher_repetition", "duplicate_paragraphs"): (
        {},
        "\n\n".join([CLEAN.split("\n")[0]] * 4 + CLEAN.split("\n")[1:4]),
        {},
    ),
    ("gopher_repetition", "duplicate_paragraph_chars"): (
        {},
        "\n\n".join([CLEAN.replace("\n", " ")] * 2 + [f"Short note {w}." for w in distinct_words(6)]),
        {},
    ),
    ("gopher_repetition", "duplicate_lines"): (
        {},
        "\n".join(["Click here to subscribe."] * 5 + [s for s in CLEAN.split("\n") if s][:6]),
        {},
    ),
    ("gopher_repetition", "duplicate_line_chars"): (
        {},
        "\n".join([CLEAN.replace("\n", " ")] * 2 + [f"Note {w}." for w in distinct_words(6)]),
        {},
    ),
    ("gopher_repetition", "top_2gram"): (_top_params(2), repeated_phrase(2), {}),
    ("gopher_repetition", "top_3gram"): (_top_params(3), repeated_phrase(3), {}),
    ("gopher_repetition", "top_4gram"): (_top_params(4), repeated_phrase(4), {}),
    **{("gopher_repetition", f"duplicate_{n}grams"): (_dup_params(n), dup_ngram_text(), {}) for n in range(5, 11)},
    ("c4", "lorem_ipsum"): ({}, CLEAN + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", {}),
    ("c4", "curly_bracket"): ({}, CLEAN + "\nThe function returns {value} to the caller every time.", {}),
    ("c4", "too_few_sentences"): (
        {},
        "One proper sentence is here.\nAnd a second one follows it.\nMenu Home About",
        {},
    ),
    ("fineweb", "empty"): ({}, "\n   \n\n", {}),
    ("fineweb", "too_few_punctuated_lines"): (
        {},
        "\n".join(f"Category page listing for the product {w} and more" for w in distinct_words(12)),
        {},
    ),
    ("fineweb", "too_many_short_lines"): ({}, "\n".join(f"Buy {w} now." for w in distinct_words(12)), {}),
    ("fineweb", "duplicate_line_chars"): (
        {},
        CLEAN
        + "\nAll rights reserved by the publisher of this page.\nAll rights reserved by the publisher of this page.",
        {},
    ),
    ("fineweb", "too_many_newlines"): (
        {},
        "\n".join(f"Remarkably {w}ness everywhere." for w in distinct_words(12, width=9)),
        {},
    ),
}


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}/{k[1]}")
def test_reason_triggered_and_clean_text_kept(key):
    name, reason = key
    params, text, keep = CASES[key]
    f = build_filter({"name": name, **params})
    assert f(doc(text)) == reason
    # The same filter with the same parameters keeps a clean article.
    assert build_filter({"name": name, **params})(doc(keep or CLEAN)) is None


def test_every_reason_of_the_heuristic_filters_has_a_case():
    for name in ("gopher_quality", "gopher_repetition", "c4", "fineweb"):
        for reason in available()[name].reasons:
            assert (name, reason) in CASES, f"no test document for {name}/{reason}"


def test_default_thresholds_drop_a_naturally_repetitive_page():
    spam = "\n".join(f"Best cheap deals on shoes, best cheap deals on {w}." for w in distinct_words(40))
    assert build_filter({"name": "gopher_repetition"})(doc(spam)) is not None


def test_punctuation_is_not_a_word():
    # Dashes, quotes and brackets must not count as words without letters (datatrove's
    # tokens do, and its >= 80 % rule then drops clean prose like this).
    text = " — ".join(f'"{s.strip()}" (see below) –' for s in CLEAN.split("\n") if s)
    d = doc(text)
    assert build_filter({"name": "gopher_quality"})(d) is None
    assert d.scores["gopher_quality.alpha_words_ratio"] == 1.0


CHINESE = (
    "今天早上，市图书馆举行了新馆开放仪式，许多市民很早就来到门口排队。"
    "馆长介绍说，新馆共有三层，收藏了大量历史文献和儿童读物。"
    "一位老人说，他从小就在这里读书，看到图书馆变得这么漂亮，心里非常高兴。"
    "图书馆还准备了讲座和展览，欢迎大家周末带孩子来参观。"
    "工作人员表示，以后每天晚上会开放到九点，方便上班的人借书。"
)
JAPANESE = (
    "昨日、市内の美術館で新しい展示室が公開され、多くの人が朝から列を作りました。"
    "学芸員によると、作品の修復には三年かかったそうです。"
    "来場者は、色が以前よりも明るく見えると話していました。"
    "夏の間は木曜日の夜八時まで開館する予定です。"
    "学校の団体見学も来月から受け付けるということです。"
)
THAI = (
    "เมื่อวานนี้พิพิธภัณฑ์ของเมืองได้เปิดห้องจัดแสดงใหม่ให้ประชาชนเข้าชม มีผู้คนจำนวนมากมาต่อแถวตั้งแต่เช้า "
    "ภัณฑารักษ์กล่าวว่าการบูรณะภาพวาดใช้เวลาสามปี ผู้เข้าชมบอกว่าสีสันดูสดใสกว่าที่เคยจำได้ "
    "พิพิธภัณฑ์จะเปิดถึงสองทุ่มในวันพฤหัสบดีตลอดฤดูร้อน"
)


@pytest.mark.parametrize("text,lang", [(CHINESE, "zh"), (JAPANESE, "ja"), (THAI, "th")], ids=["zh", "ja", "th"])
def test_no_space_scripts_are_not_dropped_for_too_few_words(text, lang):
    chain = build_chain([{"name": n} for n in ("gopher_repetition", "gopher_quality", "c4", "fineweb")])
    d = doc(text, language=lang)
    assert chain.process(d) is None, d.reject_reason
    assert d.scores["gopher_quality.n_words"] >= 50  # one word per character
    assert "gopher_quality.mean_word_length" not in d.scores  # English-calibrated rule skipped


def test_stop_word_rule_is_scoped_to_english_and_unknown_language():
    german = (
        "Das Museum hat am Samstag seinen neuen Flügel eröffnet, und schon früh bildete sich eine "
        "lange Schlange vor dem Eingang. Die Restaurierung der Gemälde dauerte drei Jahre, denn sie "
        "lagerten lange in einem feuchten Keller. Besucher sagten, die Farben wirkten heller als auf "
        "alten Fotografien. Schulen können ab nächstem Monat Führungen buchen, und im Sommer bleibt "
        "die Galerie donnerstags bis acht Uhr geöffnet."
    )
    f = build_filter({"name": "gopher_quality"})
    assert f(doc(german, language="de")) is None
    assert f(doc(german)) == "too_few_stop_words"  # no language known: Gopher's English setting
    assert (
        build_filter({"name": "gopher_quality", "stop_words_languages": ["en", "de"]})(doc(german, language="de"))
        == "too_few_stop_words"
    )


def test_c4_removes_lines_and_counts_them():
    text = CLEAN + (
        "\nPlease enable JavaScript in your browser to see this page.\n"
        "This site uses cookies to improve your experience.\n"
        "Menu\n"
        "Share this article on social media\n"
        "The report[1] was published last week.[citation needed]"
    )
    f = build_filter({"name": "c4"})
    d = doc(text)
    assert f(d) is None
    assert "JavaScript" not in d.text and "cookies" not in d.text and "Menu" not in d.text
    assert "The report was published last week." in d.text.splitlines()
    assert f.counters["lines_removed.javascript"] == 1
    assert f.counters["lines_removed.policy"] == 1
    assert f.counters["lines_removed.no_terminal_punctuation"] == 2
    assert f.counters["chars_removed"] == len(text) - len(d.text)


def test_c4_thai_skips_terminal_punctuation_rule():
    f = build_filter({"name": "c4", "min_sentences": -1})
    d = doc(THAI, language="th")
    assert f(d) is None and d.text.strip() == THAI.strip()
    d2 = doc(THAI)  # language unknown: Thai lines have no terminal mark and are removed
    build_filter({"name": "c4", "min_sentences": -1})(d2)
    assert d2.text == ""


def test_annotate_mode_keeps_text_and_records_would_be_reason():
    text = CLEAN + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.\nMenu"
    chain = build_chain([{"name": "c4"}, {"name": "fineweb"}], annotate=True)
    d = doc(text)
    assert chain.process(d) is None
    assert d.text == text
    assert d.reject_reason == "c4/lorem_ipsum"
    assert "fineweb.short_lines_ratio" in d.scores and "c4.sentences" in d.scores
    assert chain.stats[0].would_drop == {"lorem_ipsum": 1}
    assert sum(chain.stats[0].dropped.values()) == 0


def test_chain_stops_at_first_drop_and_prefixes_reason():
    chain = build_chain([{"name": "gopher_quality"}, {"name": "fineweb"}])
    d = doc("Too short to keep.")
    assert chain.process(d) == "gopher_quality/too_few_words"
    assert chain.stats[1].docs_in == 0
    assert chain.stats[0].chars_dropped == {"too_few_words": len("Too short to keep.")}


def test_disabled_rule_with_minus_one():
    f = build_filter({"name": "gopher_quality", "min_words": -1, "min_stop_words": -1})
    assert f(doc("The museum opened its doors on Saturday.")) is None


def test_repetition_scores_do_not_depend_on_the_process_hash_seed():
    """Word ids must not come from Python's randomized str hash: ties between equally frequent
    n-grams would then break differently on each worker (seen as different reasons on Ray)."""
    import subprocess
    import sys

    code = (
        "import random; from curate.core.document import Document; from filters.gopher import GopherRepetition;"
        "f = GopherRepetition(mode='annotate'); f.validate(); out = [];"
        "words = ['ab', 'cde', 'fghi', 'jklmn', 'op', 'qrs'];"
        "rngs = [random.Random(s) for s in range(30)];"
        "texts = [' '.join(r.choice(words) for _ in range(40)) for r in rngs];"
        "docs = [Document(id='x', text=t) for t in texts]; [f.apply(d) for d in docs];"
        "print([sorted(d.scores.items()) for d in docs])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**__import__("os").environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1 and "top_2gram" in outputs.pop()  # (30 short texts with many tied 2-grams)


# -- parameter ranges ---------------------------------------------------------------------

# (filter, parameters, text the one-line error must contain); the range checks run before
# the filter's own validation, so "quality" needs no real model to reject a bad threshold.
BAD_PARAMS = [
    ("gopher_quality", {"min_words": -5}, "min_words = -5 is out of range; allowed: an integer >= 0, or -1"),
    (
        "gopher_quality",
        {"max_bullet_lines_ratio": 1.7},
        "max_bullet_lines_ratio = 1.7 is out of range; allowed: a number in [0, 1]",
    ),
    ("gopher_quality", {"min_alpha_words_ratio": -0.2}, "min_alpha_words_ratio = -0.2 is out of range"),
    ("gopher_quality", {"min_words": 100, "max_words": 10}, "max_words = 10 is below min_words = 100"),
    (
        "gopher_quality",
        {"min_mean_word_length": 8.0, "max_mean_word_length": 4.0},
        "max_mean_word_length = 4.0 is below",
    ),
    ("gopher_quality", {"max_symbol_word_ratio": float("nan")}, "max_symbol_word_ratio = nan is out of range"),
    ("gopher_quality", {"min_stop_words": 9}, "min_stop_words = 9 is out of range; allowed: an integer in [0, 8]"),
    ("gopher_repetition", {"dup_line_frac": 1.5}, "dup_line_frac = 1.5 is out of range; allowed: a number in [0, 1]"),
    (
        "gopher_repetition",
        {"top_ngrams": [[0, 0.2]]},
        "top_ngrams[0] n-gram size = 0 is out of range; allowed: an integer >= 1",
    ),
    ("gopher_repetition", {"dup_ngrams": [[5, 0.1], [-3, 0.1]]}, "dup_ngrams[1] n-gram size = -3 is out of range"),
    ("gopher_repetition", {"dup_ngrams": [[5, 2.0]]}, "dup_ngrams[0] max fraction (n = 5) = 2.0 is out of range"),
    ("c4", {"min_sentences": -2}, "min_sentences = -2 is out of range; allowed: an integer >= 0, or -1"),
    ("c4", {"max_word_length": 0}, "max_word_length = 0 is out of range; allowed: an integer >= 1, or -1"),
    ("fineweb", {"max_short_lines_ratio": 1.01}, "max_short_lines_ratio = 1.01 is out of range"),
    ("fineweb", {"short_line_length": -1}, "short_line_length = -1 is out of range; allowed: an integer >= 0"),
    (
        "fineweb",
        {"max_newlines_per_word": -0.5},
        "max_newlines_per_word = -0.5 is out of range; allowed: a number >= 0",
    ),
    ("language", {"max_chars": -3}, "max_chars = -3 is out of range; allowed: an integer >= 0"),
    ("language", {"min_score": -1}, "min_score = -1.0 is out of range; allowed: a number in [0, 1]"),
    ("language", {"top_k": 0}, "top_k = 0 is out of range; allowed: an integer >= 1"),
    ("bad_words", {"max_ratio": 1.7}, "max_ratio = 1.7 is out of range; allowed: a number in [0, 1]"),
    (
        "quality",
        {"model": "no-such-model.bin", "keep_top": 0},
        "keep_top = 0.0 is out of range; allowed: a number in (0, 1]",
    ),
    ("quality", {"model": "no-such-model.bin", "threshold": 1.2}, "threshold = 1.2 is out of range"),
]


@pytest.mark.parametrize(
    "name,params,message", BAD_PARAMS, ids=lambda v: v if isinstance(v, str) and " " not in v else None
)
def test_out_of_range_parameters_are_one_line_config_errors(name, params, message):
    from curate.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_filter({"name": name, **params})
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{name}: ")  # names the filter
    assert message in text


def test_range_errors_name_the_label_of_a_relabelled_filter():
    from curate.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^strict_c4 \(c4\): min_words_per_line = -7 is out of range"):
        build_filter({"name": "c4", "label": "strict_c4", "min_words_per_line": -7})


def test_off_values_and_edges_are_still_accepted():
    f = build_filter(
        {
            "name": "gopher_quality",
            "min_words": -1,
            "max_words": 10,
            "max_bullet_lines_ratio": -1,
            "min_alpha_words_ratio": 0,
            "max_ellipsis_lines_ratio": 1,
            "min_stop_words": 8,
        }
    )
    assert f.max_words == 10 and f.min_alpha_words_ratio == 0.0
    # An n-gram rule switched off with -1, as the docstring says.
    build_filter({"name": "gopher_repetition", "top_ngrams": [[2, -1]], "dup_ngrams": []})
    build_filter({"name": "c4", "max_word_length": -1, "min_sentences": 0})
    build_filter({"name": "language", "max_chars": 0, "min_score": 1})


def test_every_filter_builds_with_its_defaults(tmp_path):
    """Defaults must sit inside the declared ranges; only the required parameters are given."""
    model = tmp_path / "quality.bin"
    model.write_bytes(b"not loaded until the first document")
    required = {"url_blocklist": {"domains": ["example.com"]}, "quality": {"model": str(model)}}
    names = list(available())
    assert {
        "language",
        "gopher_quality",
        "gopher_repetition",
        "c4",
        "fineweb",
        "quality",
        "url_blocklist",
        "bad_words",
        "pii",
    } <= set(names)
    for name in names:
        f = build_filter({"name": name, **required.get(name, {})})
        assert f.name == name


def test_every_numeric_parameter_declares_its_range():
    """A new threshold without a declared range would be accepted unchecked again."""
    import dataclasses
    import typing

    for name, cls in available().items():
        hints = typing.get_type_hints(cls)
        for fld in dataclasses.fields(cls):
            hint = hints[fld.name]
            numeric = hint in (int, float) or (
                typing.get_origin(hint) is not None and set(typing.get_args(hint)) & {int, float}
            )
            if numeric and typing.get_origin(hint) is not list:
                assert fld.name in cls.bounds, f"{name}.{fld.name} has no declared range"
