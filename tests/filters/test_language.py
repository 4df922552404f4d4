"""The language filter: fastText lid.176 on sentences written for these tests, and its reasons."""

from __future__ import annotations

import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError
from filters.registry import build_filter

# One everyday sentence per language, written for this test suite.
SENTENCES = {
    "en": "The weather was lovely this morning, so we walked along the river to the old bridge.",
    "de": "Am Wochenende fahren wir mit dem Zug zu meinen Großeltern, die auf dem Land wohnen.",
    "fr": "Nous avons dîné dans un petit restaurant près de la gare, et le repas était délicieux.",
    "es": "Mi hermana trabaja en un hospital y siempre llega muy cansada a casa por la noche.",
    "it": "Domani mattina andremo al mercato per comprare frutta fresca e un po' di formaggio.",
    "pt": "O meu irmão aprendeu a tocar guitarra sozinho, vendo vídeos na internet todas as noites.",
    "nl": "We hebben gisteren de hele middag in het park gezeten omdat het zulk mooi weer was.",
    "ru": "Вчера вечером мы долго гуляли по городу и разговаривали о планах на лето.",
    "zh": "我们明天早上要去公园散步，然后在附近的饭馆吃午饭。",
    "ja": "週末は友達と一緒に映画を見に行って、そのあと駅の近くでご飯を食べました。",
    "ko": "어제는 비가 많이 와서 하루 종일 집에서 책을 읽으면서 쉬었어요.",
    "ar": "ذهبنا أمس إلى السوق واشترينا الخضار والفواكه الطازجة للعشاء.",
    "hi": "कल शाम हम अपने दोस्तों के साथ बाज़ार गए और वहाँ बहुत स्वादिष्ट खाना खाया।",
    "tr": "Dün akşam arkadaşlarımla birlikte sahilde uzun bir yürüyüş yaptık ve çay içtik.",
    "pl": "W przyszłym tygodniu jedziemy z rodziną nad morze, żeby trochę odpocząć od pracy.",
    "sv": "Vi åkte till sommarstugan i helgen och badade i sjön varje morgon.",
    "th": "เมื่อวานนี้เราไปเดินเล่นที่ตลาดน้ำและกินก๋วยเตี๋ยวเรือที่อร่อยมาก",
    "vi": "Hôm qua chúng tôi đã đi dạo quanh hồ và ăn tối ở một quán nhỏ gần nhà.",
}


@pytest.fixture(scope="module")
def language():
    return build_filter({"name": "language"})


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_identifies_language(language, lang):
    d = Document(id=lang, text=SENTENCES[lang])
    assert language(d) is None
    assert d.language == lang
    assert 0.65 <= d.language_score <= 1.0
    assert d.scores["language.score"] == pytest.approx(d.language_score)


def test_newlines_and_long_text_are_handled(language):
    text = ("\n".join([SENTENCES["de"]] * 3) + "\n\n") * 2000  # ~ 500 kB, many lines
    d = Document(id="long", text=text)
    assert language(d) is None and d.language == "de"


def test_no_text(language):
    for text in ("", "   \n\t ", "12 345 6789 !!! ...", "--- *** ---"):
        d = Document(id="x", text=text)
        assert language(d) == "no_text"
        assert d.language is None


def test_low_score_and_excluded_language():
    keep_all = build_filter({"name": "language"})
    assert keep_all(Document(id="x", text="asdf qwer zxcv")) == "low_score"
    english_only = build_filter({"name": "language", "languages": ["en"]})
    d = Document(id="de", text=SENTENCES["de"])
    assert english_only(d) == "excluded_language"
    assert d.language == "de"  # still annotated
    assert english_only(Document(id="en", text=SENTENCES["en"])) is None
    assert english_only(Document(id="g", text="asdf qwer zxcv")) == "low_score"
    strict = build_filter({"name": "language", "min_score": 1.0})
    assert strict(Document(id="en", text="ok ok lol")) == "low_score"


def test_keep_list_of_several_languages():
    f = build_filter({"name": "language", "languages": ["zh", "ja"]})
    assert f(Document(id="zh", text=SENTENCES["zh"])) is None
    assert f(Document(id="ja", text=SENTENCES["ja"])) is None
    assert f(Document(id="ko", text=SENTENCES["ko"])) == "excluded_language"


def test_model_parameter_validated(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_filter({"name": "language", "model": str(tmp_path / "missing.ftz")})
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    f = build_filter({"name": "language", "model": str(bad)})
    with pytest.raises(ConfigError, match="not a fastText model"):
        f(Document(id="x", text=SENTENCES["en"]))
    with pytest.raises(ConfigError, match="min_score"):
        build_filter({"name": "language", "min_score": 1.5})
