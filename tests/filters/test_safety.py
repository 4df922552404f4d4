"""Safety filters: url_blocklist, bad_words and the pii transform."""

from __future__ import annotations

import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError
from filters.registry import build_chain, build_filter

PROSE = (
    "The council met on Tuesday to discuss the new cycle lanes, and most members agreed that "
    "the plan should go ahead before the end of the year. Residents will be invited to comment "
    "on the final route at a public meeting in the town hall next month."
)


def test_url_blocklist_domains_subdomains_and_patterns(tmp_path):
    listing = tmp_path / "block.txt"
    listing.write_text("# spam domains\nbad-casino.com\nwww.tracker.net\n\nexample.org/ads/*\n*.xxx\n")
    f = build_filter({"name": "url_blocklist", "blocklist": str(listing)})

    def check(url):
        return f(Document(id="d", text=PROSE, url=url))

    assert check("https://bad-casino.com/win") == "blocked_domain"
    assert check("http://promo.bad-casino.com/") == "blocked_domain"  # subdomain
    assert check("https://tracker.net/pixel") == "blocked_domain"  # www. ignored on both sides
    assert check("https://notbad-casino.com/") is None  # a suffix that is not a subdomain
    assert check("https://www.example.org/ads/banner1") == "blocked_url"
    assert check("https://example.org/news/today") is None
    assert check("https://video.xxx/page") == "blocked_url"
    assert check("https://good.example.com/") is None
    assert f(Document(id="d", text=PROSE)) is None
    assert f.counters["no_url"] == 1


def test_url_blocklist_inline_and_errors(tmp_path):
    f = build_filter({"name": "url_blocklist", "domains": ["spam.biz"]})
    assert f(Document(id="d", text="x", url="https://a.b.spam.biz/x")) == "blocked_domain"
    with pytest.raises(ConfigError, match="empty blocklist"):
        build_filter({"name": "url_blocklist"})
    with pytest.raises(ConfigError, match="not found"):
        build_filter({"name": "url_blocklist", "blocklist": str(tmp_path / "none.txt")})


def test_bad_words_ratio_and_default_list():
    f = build_filter({"name": "bad_words"})
    spam = PROSE + " Free porn videos, hot xxx girls and live sex cams: porn porn porn."
    d = Document(id="d", text=spam, language="en")
    assert f(d) == "too_many_bad_words"
    assert d.scores["bad_words.count"] >= 6  # porn x4, xxx, "live sex" phrase
    assert f(Document(id="ok", text=PROSE, language="en")) is None
    # One incidental word in a long text stays under the ratio.
    long_text = " ".join([PROSE] * 6) + " He said the referee's decision was bullshit."
    assert build_filter({"name": "bad_words"})(Document(id="l", text=long_text, language="en")) is None
    assert (
        build_filter({"name": "bad_words", "max_ratio": 0.0})(Document(id="l", text=long_text, language="en"))
        == "too_many_bad_words"
    )


def test_bad_words_lists_per_language(tmp_path):
    de = tmp_path / "de.txt"
    de.write_text("scheisse\nmist\n")
    zh = tmp_path / "zh.txt"
    zh.write_text("色情\n")
    f = build_filter({"name": "bad_words", "word_lists": {"de": str(de), "zh": str(zh)}, "max_ratio": 0.01})
    assert (
        f(Document(id="de", text="So ein Mist, alles Mist und Scheisse heute.", language="de")) == "too_many_bad_words"
    )
    assert f(Document(id="zh", text="这个网站有很多色情内容，色情图片。", language="zh")) == "too_many_bad_words"
    assert f(Document(id="zh2", text="这个网站有很多有趣的内容。", language="zh")) is None
    # A language without a list is kept and counted; English words do not count in German.
    assert f(Document(id="fr", text="Du porno partout.", language="fr")) is None
    assert f.counters["no_list.fr"] == 1
    assert f(Document(id="de2", text="Porn porn porn ist ein englisches Wort.", language="de")) is None


def test_pii_replaces_and_counts():
    text = (
        "Write to jane.doe+news@mail.example.co.uk or call +1 (555) 123-4567 or 020 7946 0958.\n"
        "Server 192.168.10.254 and 2001:db8::8a2e:370:7334 answered; the meeting is on 2024-01-31.\n"
        "Version 1.2.3 shipped in 1999, order 12345 cost 3.50, see 10:30 and a::b."
    )
    f = build_filter({"name": "pii"})
    d = Document(id="p", text=text)
    assert f(d) is None
    assert "jane.doe" not in d.text and "<EMAIL>" in d.text
    assert "192.168.10.254" not in d.text and "2001:db8" not in d.text
    assert d.text.count("<IP_ADDRESS>") == 2
    assert "555" not in d.text and "7946" not in d.text and d.text.count("<PHONE>") == 2
    # Dates, versions, small numbers and times are left alone.
    for keep in ("2024-01-31", "1.2.3", "1999", "12345", "3.50", "10:30", "a::b"):
        assert keep in d.text
    assert d.scores == {"pii.emails": 1.0, "pii.ipv4": 1.0, "pii.ipv6": 1.0, "pii.phones": 2.0}
    assert f.counters["replaced.phones"] == 2 and f.counters["docs_changed"] == 1
    assert d.n_chars is not None and d.to_row()["n_chars"] == len(d.text)


def test_pii_options_and_annotate():
    text = "Mail me at someone@example.com from 10.0.0.1."
    only_email = build_filter({"name": "pii", "ips": False, "email_placeholder": "[email]"})
    d = Document(id="p", text=text)
    only_email(d)
    assert d.text == "Mail me at [email] from 10.0.0.1."
    chain = build_chain([{"name": "pii"}], annotate=True)
    d2 = Document(id="p2", text=text)
    assert chain.process(d2) is None
    assert d2.text == text and d2.scores["pii.emails"] == 1.0
