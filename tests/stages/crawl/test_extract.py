"""curate.stages.crawl.decode and .extract: payload decoding, charsets, main-text extraction, the time limit."""

from __future__ import annotations

import threading
import time
import zlib

import brotli
import pytest

from curate.stages.crawl.decode import DecodeError, dechunk, decode_html, decode_payload
from curate.stages.crawl.extract import ExtractOptions, ExtractTimeout, TextExtractor, time_limit


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def test_dechunk():
    assert dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert dechunk(b"<html>not chunked</html>") == b"<html>not chunked</html>"
    assert dechunk(b"5\r\nhello\r\n8\r\ncut") == b"hellocut"  # last chunk cut short: keep it


@pytest.mark.parametrize(
    "coding,encode",
    [
        ("gzip", _gzip),
        ("x-gzip", _gzip),
        ("deflate", lambda d: zlib.compress(d)),
        ("deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, as many servers send
        ("br", lambda d: brotli.compress(d)),
    ],
)
def test_content_encodings(coding, encode, warc_kit):
    html = warc_kit.article_html("Encoded page").encode()
    assert decode_payload(encode(html), {"content-encoding": coding}) == html


def test_chunked_then_gzip_and_stored_decoded(warc_kit):
    html = warc_kit.article_html("Stacked").encode()
    body = _gzip(html)
    chunked = (
        b"".join(b"%x\r\n" % len(body[i : i + 100]) + body[i : i + 100] + b"\r\n" for i in range(0, len(body), 100))
        + b"0\r\n\r\n"
    )
    assert decode_payload(chunked, {"transfer-encoding": "chunked", "content-encoding": "gzip"}) == html
    # Crawlers often store the decoded body but keep the header.
    assert decode_payload(html, {"content-encoding": "gzip"}) == html


def test_truncated_gzip_keeps_what_decodes_and_garbage_raises(warc_kit):
    html = warc_kit.article_html("Truncated", n_paras=40).encode()
    part = decode_payload(_gzip(html)[:-300], {"content-encoding": "gzip"})
    assert 0 < len(part) < len(html) and html.startswith(part)
    with pytest.raises(DecodeError):
        decode_payload(b"\x1f\x8b\x08\x00garbage-garbage", {"content-encoding": "gzip"})
    with pytest.raises(DecodeError):
        decode_payload(b"abc", {"content-encoding": "compress"})


RU = "Осенью в парках Москвы деревья покрываются золотой и красной листвой."
ZH = "秋天的北京天高气爽，香山的红叶吸引了许多游客。"
JA = "秋の京都では、寺院の紅葉を見に多くの観光客が訪れます。"


@pytest.mark.parametrize(
    "text,codec,declared_in",
    [
        (RU, "windows-1251", "header"),
        (ZH, "gb2312", "meta"),
        (JA, "euc-jp", "header"),
        (JA, "shift_jis", "meta"),
    ],
)
def test_legacy_charsets_decode_to_unicode(text, codec, declared_in):
    meta = f'<meta charset="{codec}">' if declared_in == "meta" else ""
    html = f"<html><head>{meta}<title>t</title></head><body><p>{text}</p></body></html>"
    header = codec if declared_in == "header" else None
    decoded, used = decode_html(html.encode(codec), header)
    assert text in decoded
    assert used  # a real codec name


def test_http_equiv_meta_and_detection_and_wrong_declaration():
    html = f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head><body><p>{RU * 3}</p></body></html>'
    assert RU in decode_html(html.encode("cp1251"))[0]
    # Declared utf-8 but really windows-1251: the declaration is not trusted.
    assert RU in decode_html(html.encode("cp1251"), "utf-8")[0]
    # Nothing declared at all: detection.
    bare = f"<html><body><p>{RU * 4}</p></body></html>".encode("cp1251")
    decoded, _used = decode_html(bare)
    assert RU in decoded
    # latin-1 declared but valid UTF-8 (a common lie) is UTF-8.
    assert decode_html("<p>café</p>".encode(), "iso-8859-1") == ("<p>café</p>", "utf-8")


def test_extractor_keeps_article_drops_navigation(warc_kit):
    ex = TextExtractor()
    text = ex.extract(warc_kit.article_html("Main story", n_paras=5), "https://example.com/a")
    assert "Paragraph number 4." in text
    assert "Home" not in text and "Copyright footer" not in text
    assert ex.extract("", None) == "" and ex.extract("   ", None) == ""


def test_extract_modes_agree_on_a_clear_article(warc_kit):
    html = warc_kit.article_html("Clear article", n_paras=8)
    texts = {m: TextExtractor(ExtractOptions(mode=m)).extract(html) for m in ("fast", "full", "adaptive")}
    assert texts["fast"] == texts["full"] == texts["adaptive"]


def test_bad_mode_is_a_config_error():
    from curate.core.errors import ConfigError

    with pytest.raises(ConfigError):
        TextExtractor(ExtractOptions(mode="turbo"))


def test_time_limit_interrupts_and_is_main_thread_only():
    started = time.monotonic()
    with pytest.raises(ExtractTimeout):
        with time_limit(0.2) as active:
            assert active
            while True:  # a "pathological page"
                pass
    assert time.monotonic() - started < 5
    # The alarm is cleared afterwards: nothing fires later.
    with time_limit(0.5):
        pass
    time.sleep(0.6)
    seen = []
    t = threading.Thread(target=lambda: seen.append(time_limit(1.0).__enter__()))
    t.start()
    t.join()
    assert seen == [False]


def test_extract_timeout_propagates_through_trafilatura(monkeypatch, warc_kit):
    ex = TextExtractor(ExtractOptions(time_limit=0.2))

    def slow(*args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(ex, "extract_tree", slow)
    with pytest.raises(ExtractTimeout):
        ex.extract(warc_kit.article_html("slow"))


def test_strip_inert_drops_textless_elements_keeps_tails_and_json_ld():
    from curate.stages.crawl.extract import parse_html

    html = (
        "<html><head><meta charset='utf-8'><link rel=x href=y><style>p{}</style>"
        '<script type=\'application/ld+json\'>{"@type": "NewsArticle"}</script></head><body>'
        "<p>before<script>var x = 'hidden script text';</script>after</p>"
        "<svg><text>icon label</text></svg>tail of svg<noscript>kept fallback</noscript>"
        "<iframe>frame</iframe></body></html>"
    )
    stripped = parse_html(html)
    kept = parse_html(html, strip=False)
    text = stripped.text_content()
    assert "hidden script text" not in text and "icon label" not in text and "p{}" not in text
    assert "beforeafter" in text and "tail of svg" in text and "kept fallback" in text
    assert [s.get("type") for s in stripped.iter("script")] == ["application/ld+json"]
    assert not list(stripped.iter("meta", "link", "style", "svg", "iframe"))
    assert "hidden script text" in kept.text_content()  # strip=False leaves the tree alone


def test_stripping_does_not_change_the_extracted_text(warc_kit):
    html = warc_kit.article_html("Inert elements", n_paras=6).replace(
        "<article>", "<article><script>track('x')</script><svg><path d='M0'/></svg><style>.a{}</style>"
    )
    with_strip = TextExtractor(ExtractOptions(mode="full")).extract(html)
    without = TextExtractor(ExtractOptions(mode="full", strip_inert=False)).extract(html)
    assert with_strip == without and "Paragraph number 5." in with_strip


def test_adaptive_routes_pages_by_paragraph_text(warc_kit):
    from curate.stages.crawl.extract import paragraph_chars, parse_html, text_outside_links

    article = warc_kit.article_html("Routing article", n_paras=12)
    tree = parse_html(article)
    assert paragraph_chars(tree) > 1000
    # Links do not count as text outside links.
    outside = text_outside_links(parse_html("<html><body><a href='/'>only a link here</a> and words</body></html>"))
    assert len("and words") <= outside <= len(" and words")
    ex = TextExtractor(ExtractOptions(mode="adaptive"))
    text = ex.extract(article)
    assert "Paragraph number 11." in text and (ex.direct_full, ex.reruns) == (0, 0)
    # A page whose text is not in <p> elements goes straight to the full cascade, and gets
    # the same text as mode=full.
    portal = (
        "<html><body><div class='main'>"
        + "".join(
            f"<div>Item {i}: a longer description of the item with words enough to be read as text.</div>"
            for i in range(30)
        )
        + "</div></body></html>"
    )
    assert ex.extract(portal) == TextExtractor(ExtractOptions(mode="full")).extract(portal)
    assert ex.direct_full == 1


def test_guard_regex_tests_only_guards_patterns_that_cannot_match_empty():
    from curate.stages.crawl.xpaths import guard_regex_tests

    path = ".//*[re:test(@class, 'foot|nav') or re:test(@id|@class, '^x') or re:test(@id, 'a?')]"
    out = guard_regex_tests(path)
    assert "((@class) and re:test(@class, 'foot|nav'))" in out
    assert "((@id|@class) and re:test(@id|@class, '^x'))" in out
    # 'a?' matches '' (an element without an id passes): must stay unguarded.
    assert "re:test(@id, 'a?')" in out and "((@id) and re:test(@id, 'a?'))" not in out
    assert guard_regex_tests(".//p[contains(@class, 'x')]") == ".//p[contains(@class, 'x')]"


# Attributes chosen to hit trafilatura's rules (and near misses): absent, empty, several values.
_XPATH_PROBE = (
    "<html><body>"
    + "".join(
        f"<{tag} {attrs}><p>text {i}</p><span class='author'>by me</span></{tag}>"
        for i, (tag, attrs) in enumerate(
            (tag, attrs)
            for tag in ("div", "section", "span", "p", "ul", "ol", "aside", "article", "main", "details")
            for attrs in (
                "",
                "class=''",
                "id=''",
                "class='footer nav'",
                "id='comments' class='x'",
                "class='x' id='comments'",
                "id='hidden-box'",
                "style='display:none'",
                "class='post-content article-body'",
                "id='sidebar'",
                "class='bottom-bar'",
                "class='link'",
                "class='Commentary'",
                "id='disqus_thread'",
                "aria-hidden='true'",
                "class='share-buttons'",
                "role='navigation'",
                "class='byline author-name'",
                "id='infinite-scroll'",
                "class='caption'",
                "class='teaser'",
                # BODY_XPATH hits (several siblings match: positional [1] rules), a
                # case-insensitive re:test and translate() on mixed case.
                "class='post'",
                "class='entry'",
                "id='article-content' class='x'",
                "class='FullText story'",
                "id='content'",
                "class='Main-Content'",
                "class='x' id='main-wrap'",
                "style='border: 1px'",
            )
        )
    )
    + "</body></html>"
)


def test_fast_xpaths_select_exactly_what_trafilatura_selects_and_are_restored(warc_kit):
    import lxml.html
    from trafilatura import xpaths

    from curate.stages.crawl.extract import parse_html
    from curate.stages.crawl.xpaths import fast_xpaths

    swaps = fast_xpaths().swaps
    assert len(swaps) >= 5  # the rule lists trafilatura evaluates on every page
    trees = [lxml.html.fromstring(_XPATH_PROBE), parse_html(warc_kit.article_html("Probe", n_paras=3))]
    changed = 0
    for target, original, faster in swaps:
        assert target == original  # outside our calls trafilatura's lists are its own
        for slow, fast in zip(original, faster):
            changed += slow is not fast
            for tree in trees:
                assert fast(tree) == slow(tree), slow.path
    assert changed >= 10
    # Most of trafilatura's boilerplate rules run as Python rules, BODY_XPATH's positional ones too.
    from curate.stages.crawl.xpath_rules import PythonRule

    assert sum(isinstance(f, PythonRule) for _, _, faster in swaps for f in faster) >= 15
    assert sum(isinstance(f, PythonRule) and bool(f.first) for _, _, faster in swaps for f in faster) >= 3
    with fast_xpaths().active():
        assert all(target == faster for target, _, faster in swaps)
        assert xpaths.OVERALL_DISCARD_XPATH is swaps[[t for t, _, _ in swaps].index(xpaths.OVERALL_DISCARD_XPATH)][0]
    assert all(target == original for target, original, _ in swaps)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_fast_xpaths_give_the_same_text(mode, warc_kit):
    pages = [warc_kit.article_html("Same text", n_paras=5), _XPATH_PROBE]
    fast = TextExtractor(ExtractOptions(mode=mode, fast_xpaths=True))
    plain = TextExtractor(ExtractOptions(mode=mode, fast_xpaths=False))
    for page in pages:
        assert fast.extract(page) == plain.extract(page)
    assert "Paragraph number 4." in fast.extract(pages[0])


# Expressions outside trafilatura's lists that probe the XPath semantics PythonRule reproduces:
# the string value of @a|@b (first attribute in document order), @a|@b = 'v' (any of them),
# translate() with a longer source than target, the 'i' flag, not(), descendant tests,
# positional [1] per parent and (...)[1] per document, tags and attributes outside the rule.
_SEMANTICS_PAGE = """<html><body>
<div id='navx' class='main'><p class='main'>a</p><div class='a-main'>b<h1>t</h1></div></div>
<div class='navx' id='other'><span class='Nav Bar'>c</span><div id='main'>d</div></div>
<section class='' id=''><div class='main' data-x='1'>e</div><div class='main' data-x='2'>f</div></section>
<ul><li id='QxyZ'>g</li><li class='qxz' style='display:none'>h</li></ul>
<div role='mainnav' aria-hidden='true'><div class='main second'>i</div></div>
</body></html>"""
_SEMANTICS_RULES = [
    ".//*[starts-with(@id|@class, 'nav')]",
    ".//*[re:test(@class|@id, '^nav')]",
    ".//*[@id|@class = 'main']",
    ".//*[contains(translate(@id, 'QXYZ', 'qx'), 'qx')]",
    ".//*[re:test(@class, 'nav bar', 'i') or re:test(@id, 'QXY', 'i')]",
    ".//*[self::div or self::span][not(.//h1) and re:test(@class, 'main')]",
    ".//*[self::div or self::p][@class='main'][1]",
    "(.//*[self::div or self::section][re:test(@class, 'main')])[1]",
    ".//*[@aria-hidden='true' or contains(@style, 'display:none') or @role]",
    ".//*[not(@class) and not(self::li)]",
    ".//*[@class='' or @id='']",
]


def test_python_rules_match_xpath_semantics():
    import lxml.etree
    import lxml.html

    from curate.stages.crawl.xpath_rules import PythonRule

    tree = lxml.html.fromstring(_SEMANTICS_PAGE)
    for path in _SEMANTICS_RULES:
        xpath = lxml.etree.XPath(path, namespaces={"re": "http://exslt.org/regular-expressions"})
        rule = PythonRule(path)
        want = xpath(tree)
        assert rule(tree) == want, path
        assert rule(tree) == want, path  # again, from the verdict cache
        assert want, path  # every probe selects something
    # A descendant test is re-evaluated on a changed tree (no stale cached verdict).
    rule = PythonRule(".//*[self::div][not(.//h1)]")
    before = len(rule(tree))
    tree.find(".//h1").drop_tree()
    assert len(rule(tree)) == before + 2


@pytest.mark.parametrize(
    "path",
    [
        "//*[@class='x']",  # absolute: the whole document, not the subtree
        ".//*[rel='me']",  # a child element's text
        ".//*[position() > 1]",
        ".//*[@class][2]",
        ".//p[@class='x']",
        ".//*[count(@*) = 2]",
        "(.//*[@id])[1]|(.//main)[1]",
    ],
)
def test_python_rules_refuse_what_they_do_not_understand(path):
    import lxml.etree

    from curate.stages.crawl.xpath_rules import PythonRule, Unsupported
    from curate.stages.crawl.xpaths import _FastXPaths

    with pytest.raises(Unsupported):
        PythonRule(path)
    kept = _FastXPaths.faster(lxml.etree.XPath(path))
    assert not isinstance(kept, PythonRule)


def test_fast_xpaths_are_restored_when_an_extraction_is_interrupted():
    """An ExtractTimeout (a BaseException raised by SIGALRM at any point) inside our call must
    leave trafilatura's own rule lists in place for everyone else."""
    from curate.stages.crawl.extract import ExtractTimeout
    from curate.stages.crawl.xpaths import fast_xpaths

    swaps = fast_xpaths().swaps
    assert swaps
    with pytest.raises(ExtractTimeout):
        with fast_xpaths().active():
            assert all(target == faster for target, _, faster in swaps)
            raise ExtractTimeout()
    assert fast_xpaths().depth == 0
    assert all(target == original for target, original, _ in swaps)


def test_python_rules_do_not_cache_long_attribute_values():
    import lxml.html

    from curate.stages.crawl.xpath_rules import PythonRule

    rule = PythonRule(".//*[contains(@style, 'display:none')]")
    long_style = "background:url(data:image/png;base64," + "A" * 2000 + ");display:none"
    tree = lxml.html.fromstring(f'<div><p style="{long_style}">x</p><p style="color:red">y</p></div>')
    assert [e.text for e in rule(tree)] == ["x"]
    assert all(len(v) <= 256 for _, attrs in rule.cache for _, v in attrs)
