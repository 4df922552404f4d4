"""End to end in a real headless browser: Debian's Chromium driven by Selenium + chromedriver.

A rater signs in with their personal link, rates three pairs (one by clicking, two by keyboard,
one with a typed reason), goes back to revise one, and the export holds exactly those choices
with the answer texts the page showed. The pairs contain ``<script>`` and ``onerror`` markup,
which must show as text and never run.

Skips only when Chromium or chromedriver is not installed (``apt-get install chromium
chromium-driver``); a missing ``selenium`` package is a failure (it is in the ``test`` extra).
"""

from __future__ import annotations

import json
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.comparisons import PAIRS_SCHEMA, read_comparisons
from curate.rate.export import export_ratings
from curate.rate.server import RateServer
from curate.rate.session import Rater, RatingSession

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium not installed (apt-get install -y chromium chromium-driver)",
)
XSS = '<script>window.__pwned = 1</script><img id=injected src=x onerror="window.__pwned = 2">'
TOKEN = "browser-test-token-0123456789"


def write_pairs(path: Path) -> Path:
    rows = [
        {
            "pair_id": f"b{i}",
            "prompt": f"Question {i}: what is {i} + {i}? {XSS}",
            "response_1": f"It is {2 * i}. {XSS}",
            "response_2": f"Maybe {2 * i + 1}? <b>not bold</b>",
            "model": "test",
            "meta": None,
        }
        for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), path)
    return path


@contextmanager
def serving(session: RatingSession):
    """The server on a free loopback port, in a thread; closed with the session afterwards."""
    server = RateServer(session, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        session.close()


def page_problems(browser) -> list[str]:
    """Script errors and anything the Content-Security-Policy blocked, from the browser's console."""
    return [
        e["message"]
        for e in browser.get_log("browser")
        if "Uncaught" in e["message"] or "Content Security Policy" in e["message"]
    ]


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def test_rate_three_pairs_by_click_and_keyboard(tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    pairs = write_pairs(tmp_path / "pairs.parquet")
    out = tmp_path / "ratings"
    session = RatingSession(out, pairs, [Rater("ann", TOKEN)], require_tokens=True)
    wait = WebDriverWait(browser, 15)
    text = lambda element_id: browser.find_element(By.ID, element_id).get_attribute("textContent")  # noqa: E731
    keys = lambda k: ActionChains(browser).send_keys(k).perform()  # noqa: E731

    def pair_on_screen() -> str:
        return browser.find_element(By.TAG_NAME, "body").get_attribute("data-pair-id") or ""

    def wait_for_pair(pair_id: str) -> dict[str, str]:
        wait.until(lambda d: pair_on_screen() == pair_id and text("a"))
        return {"a": text("a"), "b": text("b")}

    with serving(session) as server:
        # Without the token the page cannot load pairs; with the personal link it can.
        browser.get(server.url())
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(server.url(session.raters["ann"]))
        assert browser.current_url.rstrip("/").endswith(str(server.server_port))  # token gone from the address bar
        shown = {"b0": wait_for_pair("b0")}

        # Markup in the texts is shown as text, never parsed or run.
        assert text("prompt").endswith(XSS) and XSS in shown["b0"]["a"] + shown["b0"]["b"]
        assert browser.execute_script("return window.__pwned === undefined")
        assert not browser.find_elements(By.ID, "injected") and not browser.find_elements(By.CSS_SELECTOR, ".text b")
        assert text("progress") == "0 / 3 rated"

        # Pair 1: by clicking.
        browser.find_element(By.ID, "btn-a").click()
        shown["b1"] = wait_for_pair("b1")
        assert text("progress") == "1 / 3 rated"

        # Pair 2: by keyboard, with a reason (r focuses the box, Esc leaves it, 2 = B is better).
        keys("r")
        assert browser.switch_to.active_element.get_attribute("id") == "reason"
        keys("B explains 1 + 1 = 2")  # digits typed in the box must not rate
        keys(Keys.ESCAPE)
        assert pair_on_screen() == "b1"
        keys("2")
        shown["b2"] = wait_for_pair("b2")

        # Pair 3: a tie by keyboard, then back (u) and change it to A is better (a).
        keys("t")
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert text("progress") == "3 / 3 rated"
        keys("u")
        wait.until(lambda d: d.find_element(By.ID, "revising").is_displayed())
        assert pair_on_screen() == "b2" and "previous" in browser.find_element(By.ID, "btn-tie").get_attribute("class")
        keys("a")
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert browser.execute_script("return window.__pwned === undefined")

        # After a reload (the cookie keeps the rater signed in) Back still reaches the last pair.
        browser.refresh()
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed() and text("rater") == "ann")
        keys("u")
        wait.until(lambda d: d.find_element(By.ID, "revising").is_displayed())
        assert pair_on_screen() == "b2" and "previous" in browser.find_element(By.ID, "btn-a").get_attribute("class")
        assert page_problems(browser) == []

    stats = export_ratings(out, tmp_path / "comparisons.parquet")
    assert stats.lines == 4 and stats.revised == 1 and stats.exported == 3 and stats.balanced
    rows = {r["prompt"].split(":")[0]: r for r in read_comparisons(tmp_path / "comparisons.parquet")}
    assert rows["Question 0"]["chosen"] == shown["b0"]["a"] and rows["Question 0"]["rejected"] == shown["b0"]["b"]
    assert rows["Question 1"]["chosen"] == shown["b1"]["b"] and rows["Question 1"]["reason"] == "B explains 1 + 1 = 2"
    assert rows["Question 2"]["chosen"] == shown["b2"]["a"]
    assert {r["rater"] for r in rows.values()} == {"ann"}


def test_content_note_pass_and_break_pause(tmp_path, browser):
    """A flagged pair opens on its content note with the texts hidden; passing on it moves on and
    does not count as rated; after ten minutes of rating the page pauses (also after a reload)
    and resumes at the pair it stopped at; a flagged pair can also be read and rated."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from curate.rate.wellbeing import Limits

    rows = [
        {
            "pair_id": f"c{i}",
            "prompt": f"Question {i}" + (f" about zebras {XSS}" if i in (1, 4) else ""),
            "response_1": f"One {i}",
            "response_2": f"Two {i}",
            "model": "test",
            "meta": None,
        }
        for i in range(6)
    ]
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), pairs)
    words = tmp_path / "words.txt"
    words.write_text("zebras\n")
    now = [1_700_000_000.0]
    out = tmp_path / "ratings"
    session = RatingSession(
        out,
        pairs,
        [Rater("ann", TOKEN)],
        require_tokens=True,
        flag_words=words,
        limits=Limits(break_after_s=600),
        clock=lambda: now[0],
    )
    wait = WebDriverWait(browser, 15)
    shown = lambda element_id: browser.find_element(By.ID, element_id).is_displayed()  # noqa: E731
    text = lambda element_id: browser.find_element(By.ID, element_id).get_attribute("textContent")  # noqa: E731
    keys = lambda k: ActionChains(browser).send_keys(k).perform()  # noqa: E731

    def wait_for_pair(pair_id: str) -> None:
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-pair-id") == pair_id)

    with serving(session) as server:
        assert session.assignment.queue("ann") == ["c0", "c1", "c2", "c3", "c4", "c5"]  # flagged ones spaced
        browser.get(server.url(session.raters["ann"]))
        wait_for_pair("c0")
        assert not shown("note") and shown("prompt")
        browser.find_element(By.ID, "btn-a").click()

        # c1: the content note, the texts hidden; rating keys do nothing until it is shown
        wait_for_pair("c1")
        assert shown("note") and not shown("pair-body") and not shown("prompt")
        assert "watch list" in text("note-reasons")
        keys("1")
        assert len(session.log.state("ann").answered) == 1
        now[0] += 120
        browser.find_element(By.ID, "btn-pass").click()  # "Skip this one, show me something else"
        wait_for_pair("c2")
        assert not shown("note") and shown("pair-body")
        assert text("progress") == "1 / 5 rated (1 passed on)"  # the pass is not counted against ann

        now[0] += 240
        keys("2")
        wait_for_pair("c3")
        now[0] += 240  # c0 .. c3 without a pause of 5 minutes: 10 minutes
        keys("t")
        wait.until(lambda d: shown("pause"))
        assert not shown("main") and "10 minutes" in text("pause-text")
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-pair-id") == "c4"
        keys("1")  # paused: nothing is rated
        browser.refresh()  # the pause survives a reload
        wait.until(lambda d: shown("pause") and text("rater") == "ann")
        assert len(session.log.state("ann").answered) == 4
        browser.find_element(By.ID, "btn-resume").click()
        wait.until(lambda d: not shown("pause") and shown("main"))
        wait_for_pair("c4")  # where it stopped: the next pair, a flagged one

        # c4: read it this time (v), then rate it
        assert shown("note") and not shown("pair-body")
        keys("v")
        wait.until(lambda d: shown("pair-body"))
        assert text("prompt").endswith(XSS) and browser.execute_script("return window.__pwned === undefined")
        keys("a")
        wait_for_pair("c5")
        keys("b")
        wait.until(lambda d: shown("done"))
        assert text("progress") == "5 / 5 rated (1 passed on)"
        assert page_problems(browser) == []

    stats = export_ratings(out, tmp_path / "comparisons.parquet")
    assert stats.exported == 4 and stats.ties == 1 and stats.passes == 1 and stats.balanced
    records = [json.loads(x) for x in (out / "ratings.jsonl").read_text().splitlines()]
    flagged = {r["pair_id"]: (r["choice"], r["revealed"]) for r in records if r["flags"]}
    assert flagged == {"c1": ("pass", False), "c4": ("a", True)}
    assert (out / "breaks.jsonl").read_text().count('"ann"') == 1
