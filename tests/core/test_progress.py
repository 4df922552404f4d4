"""Progress: redrawn line on a terminal, sparse plain lines elsewhere, silent when disabled."""

import io

from curate.core.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_tty_redraws_with_rates_and_eta():
    out = FakeTTY()
    p = Progress("crawl", total=4, unit="files", stream=out, enabled=True, redraw_every=0)
    p.add(records=10, docs=5)
    p.advance()
    p.close()
    text = out.getvalue()
    assert "\r" in text and "1/4 files" in text and "10 records" in text and "docs" in text and "ETA" in text
    assert text.endswith("\n")


def test_non_tty_prints_sparse_plain_lines():
    out = io.StringIO()
    p = Progress("filter", total=100, stream=out, enabled=True, log_every=3600)
    for _ in range(50):
        p.advance()
    p.close()
    assert out.getvalue() == ""  # nothing within the log interval, no carriage returns
    p2 = Progress("filter", total=10, stream=out, enabled=True, log_every=0)
    p2.advance(5)
    assert out.getvalue().count("\n") == 1 and "\r" not in out.getvalue() and "5/10 files" in out.getvalue()


def test_disabled_is_silent():
    out = FakeTTY()
    p = Progress("x", stream=out, enabled=False, redraw_every=0)
    p.add(records=3)
    p.close()
    assert out.getvalue() == ""
    assert "3 records" in p.line()
