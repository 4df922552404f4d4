"""The rating page: static HTML, CSS and JavaScript, served as three fixed documents.

No template engine and no data in the HTML: the page fetches pairs from the JSON API and puts
every piece of text into the document with ``textContent``, never ``innerHTML``, so an answer
containing ``<script>`` or ``<img onerror=...>`` shows as those characters. The server also
sends a Content-Security-Policy that allows only these same-origin scripts, as a second wall.

Kept in Python strings (not package data files) so an installed wheel always has them.
Keys: 1/a = A is better, 2/b = B is better, t = tie, s = skip, u = back (revise the previous
pair), r = write a reason, Esc = leave the reason box; on a pair with a content note, v = show
it and p = skip this one (a *pass*: it goes to someone else and does not count against the
rater); Enter = resume after a break.

A flagged pair (:mod:`.flags`) opens on its content note with the texts hidden: the rater
chooses to read it or to pass. When the server says a break is due the page pauses (nothing
can be rated) until the rater resumes, and then shows the pair it stopped at.
"""

from __future__ import annotations

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>curate rate</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <strong>curate rate</strong>
  <span id="rater"></span>
  <span id="progress" aria-live="polite"></span>
  <div id="bar" aria-hidden="true"><div id="bar-fill"></div></div>
</header>
<main id="main" hidden>
  <section id="note" role="note" hidden>
    <h2>Content note</h2>
    <p>This pair may contain <span id="note-reasons"></span>.</p>
    <p>You do not have to read it: skipping it gives it to someone else and does not count against you.</p>
    <div class="buttons">
      <button id="btn-reveal" class="secondary">Show the pair <kbd>v</kbd></button>
      <button id="btn-pass" class="secondary">Skip this one, show me something else <kbd>p</kbd></button>
    </div>
  </section>
  <div id="pair-body">
  <section id="prompt-box">
    <h2>Prompt</h2>
    <div id="prompt" class="text"></div>
  </section>
  <p id="revising" hidden>Changing your earlier rating of this pair (your choice is outlined).</p>
  <div class="answers">
    <section class="answer" id="answer-a"><h2>A</h2><div id="a" class="text"></div></section>
    <section class="answer" id="answer-b"><h2>B</h2><div id="b" class="text"></div></section>
  </div>
  <label for="reason" class="reason-label">Reason (optional; <kbd>r</kbd> to type, <kbd>Esc</kbd> to leave)</label>
  <textarea id="reason" rows="2" maxlength="5000"
    placeholder="e.g. B is correct and gives an example; A is vague"></textarea>
  <div class="buttons">
    <button id="btn-a" data-choice="a">A is better <kbd>1</kbd></button>
    <button id="btn-b" data-choice="b">B is better <kbd>2</kbd></button>
    <button id="btn-tie" data-choice="tie">Tie <kbd>t</kbd></button>
    <button id="btn-skip" data-choice="skip">Skip <kbd>s</kbd></button>
    <button id="btn-back" class="secondary">Back <kbd>u</kbd></button>
  </div>
  </div>
</main>
<section id="pause" hidden>
  <h2>Time for a break</h2>
  <p id="pause-text"></p>
  <p>Stand up, look away from the screen, get a drink. Your place is kept: you continue with the
  pair you stopped at.</p>
  <button id="btn-resume">Resume <kbd>Enter</kbd></button>
</section>
<section id="done" hidden>
  <h2>All done</h2>
  <p>Every pair assigned to you is rated. Thank you! <button id="btn-back-done" class="secondary">Back
  <kbd>u</kbd></button></p>
  <p id="held" hidden></p>
</section>
<p id="status" role="status"></p>
<script src="/app.js"></script>
</body>
</html>
"""

CSS = """
:root { --fg: #1d1d1f; --muted: #6b6b70; --line: #d2d2d7; --accent: #2f5fd0; --bg: #fafafa; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       background: var(--bg); }
header { position: sticky; top: 0; z-index: 1; display: flex; gap: 1rem; align-items: center;
         padding: .5rem 1rem; background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
#rater { color: var(--muted); }
#progress { margin-left: auto; font-variant-numeric: tabular-nums; }
#bar { flex-basis: 100%; height: 4px; background: var(--line); border-radius: 2px; }
#bar-fill { height: 100%; width: 0; background: var(--accent); border-radius: 2px; transition: width .2s; }
main, #done { max-width: 1400px; margin: 0 auto; padding: 1rem; }
h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 .3rem; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; background: #fff; border: 1px solid var(--line);
        border-radius: 6px; padding: .75rem 1rem; }
#prompt-box .text { max-height: 30vh; overflow: auto; }
.answers { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin: 1rem 0; }
.answer .text { max-height: 55vh; overflow: auto; min-height: 6rem; }
.answer.previous .text { outline: 3px solid var(--accent); }
@media (max-width: 800px) { .answers { grid-template-columns: 1fr; } }
.reason-label { display: block; color: var(--muted); font-size: .9rem; }
textarea { width: 100%; font: inherit; padding: .5rem; border: 1px solid var(--line); border-radius: 6px; }
.buttons { display: flex; gap: .5rem; flex-wrap: wrap; margin-top: .75rem; }
button { font: inherit; padding: .55rem 1.1rem; border-radius: 6px; border: 1px solid var(--accent);
         background: var(--accent); color: #fff; cursor: pointer; }
button.secondary, button[data-choice=tie], button[data-choice=skip] { background: #fff; color: var(--accent); }
button.previous { box-shadow: 0 0 0 3px #f0b400; }
button:disabled { opacity: .5; cursor: wait; }
kbd { font: .75rem ui-monospace, monospace; border: 1px solid currentColor; border-radius: 3px;
      padding: 0 .25rem; margin-left: .3rem; opacity: .8; }
#status { max-width: 1400px; margin: 0 auto; padding: 0 1rem 1rem; min-height: 1.5rem; color: var(--muted); }
#status.error { color: #b00020; font-weight: 600; }
#revising { color: var(--accent); margin: .5rem 0 0; }
#note { background: #fff8e1; border: 1px solid #f0b400; border-radius: 6px; padding: .75rem 1rem; margin-bottom: 1rem; }
#note p { margin: .3rem 0; }
#pause, #done { max-width: 1400px; margin: 0 auto; padding: 1rem; }
#pause { text-align: center; padding-top: 3rem; }
"""

JS = r"""
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const CHOICE_KEYS = { "1": "a", "a": "a", "2": "b", "b": "b", "t": "tie", "3": "tie", "s": "skip" };
  const REASONS = {
    offensive_words: "offensive or sexual language",
    watch_words: "words on this team's watch list",
    blocked_site: "a link to a blocked site",
    personal_data: "personal data (an e-mail address, phone number or IP address)",
  };
  let current = null;       // the pair on screen: {pair_id, prompt, a, b, flags, choice?}
  let revealed = true;      // false while a flagged pair's texts are hidden behind its note
  let paused = false;       // a break is due: nothing can be rated until the rater resumes
  let revising = false;     // the pair on screen was rated before (came from Back)
  const rated = [];         // pair ids rated in this page, newest last, for Back
  let busy = false;         // a request is in flight: ignore further choices
  let pending = null;       // a rating not yet confirmed by the server: retried with the same id
  let visibleMs = 0, shownAt = 0;

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);  // works on plain http too, unlike crypto.randomUUID
    return Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  async function api(path, body) {
    const opts = { credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = new Error((data && data.error) || ("HTTP " + resp.status));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  let lastProgress = null;

  function showProgress(p) {
    if (!p) return;
    lastProgress = p;
    const notes = [];
    if (p.skipped) notes.push(p.skipped + " skipped");
    if (p.passed) notes.push(p.passed + " passed on");
    $("progress").textContent = p.done + " / " + p.total + " rated" + (notes.length ? " (" + notes.join(", ") + ")" : "");
    $("bar-fill").style.width = (p.total ? (100 * p.done / p.total) : 100) + "%";
  }

  function showWellbeing(w) {
    if (!w) return;
    const held = lastProgress ? lastProgress.held : 0;
    $("held").hidden = !held;
    if (held) {
      const when = w.flagged_limit === "day" ? "within 24 hours" : "after a pause of half an hour";
      $("held").textContent = held + " more pair(s) with a content note wait for you: you have seen as many as " +
        "this server allows " + (w.flagged_limit === "day" ? "in a day" : "in one session") + ". They come back " + when + ".";
    }
    if (w.break_due) pause(w);
  }

  function pause(w) {
    paused = true;
    $("main").hidden = true;
    $("done").hidden = true;
    $("pause").hidden = false;
    $("pause-text").textContent = "You have been rating for " + Math.round(w.rating_minutes) +
      " minutes without a pause.";
    $("btn-resume").focus();
  }

  async function resume() {
    if (!paused || busy) return;
    setBusy(true);
    try {
      const data = await api("/api/resume", {});
      paused = false;
      $("pause").hidden = true;
      showProgress(data.progress);
      show(data.pair, false);
      setStatus("Welcome back.");
    } catch (err) {
      setStatus("Could not resume: " + err.message, true);
    } finally {
      setBusy(false);
    }
  }

  function reveal() {
    if (!current || revealed || paused) return;
    revealed = true;
    $("pair-body").hidden = false;
    shownAt = performance.now();
    visibleMs = 0;
  }

  function markPrevious(choice) {
    for (const id of ["btn-a", "btn-b", "btn-tie", "btn-skip"]) {
      $(id).classList.toggle("previous", $(id).dataset.choice === choice);
    }
    $("answer-a").classList.toggle("previous", choice === "a");
    $("answer-b").classList.toggle("previous", choice === "b");
  }

  function show(pair, isRevision) {
    current = pair;
    revising = !!isRevision;
    if (!pair) {
      $("main").hidden = true;
      $("done").hidden = false;
      return;
    }
    $("done").hidden = true;
    $("main").hidden = paused;
    // textContent only: answers may contain HTML or script and must show as text.
    const flags = pair.flags || [];
    $("note").hidden = !flags.length;
    $("note-reasons").textContent = flags.map((f) => REASONS[f] || f).join("; ");
    revealed = !flags.length || (revising && !!pair.choice && pair.choice !== "pass");
    $("pair-body").hidden = !revealed;
    $("prompt").textContent = pair.prompt;
    $("a").textContent = pair.a;
    $("b").textContent = pair.b;
    $("reason").value = "";
    $("revising").hidden = !revising;
    markPrevious(revising ? pair.choice : null);
    document.body.dataset.pairId = pair.pair_id;
    for (const el of document.querySelectorAll(".text")) el.scrollTop = 0;
    window.scrollTo(0, 0);
    visibleMs = 0;
    shownAt = performance.now();
  }

  function elapsedMs() {
    return Math.round(visibleMs + (document.hidden ? 0 : performance.now() - shownAt));
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) visibleMs += performance.now() - shownAt;
    else shownAt = performance.now();
  });

  function setBusy(value) {
    busy = value;
    for (const b of document.querySelectorAll("button")) b.disabled = value;
  }

  async function send() {
    setBusy(true);
    try {
      const data = await api("/api/rate", pending.body);
      const ratedId = pending.body.pair_id;
      pending = null;
      if (!rated.includes(ratedId)) rated.push(ratedId);
      showProgress(data.progress);
      setStatus(data.duplicate ? "Saved (already recorded)." : "Saved.");
      show(data.next, false);
      showWellbeing(data.wellbeing);
    } catch (err) {
      if (err.status === 409 || err.status === 404) {  // e.g. rated in another tab: move on
        pending = null;
        setStatus(err.message + "; showing the next pair.", true);
        await loadNext();
      } else if (err.status === 401 || err.status === 403) {
        pending = null;
        setStatus("Not signed in: open your personal link again (" + err.message + ").", true);
      } else if (err.status === 400) {
        pending = null;
        setStatus("Not saved: " + err.message, true);
      } else {
        // Network error or server restart: the rating is not confirmed; retry with the same id.
        setStatus("Not saved yet (" + err.message + "); retrying...", true);
        setTimeout(() => { if (pending) send(); }, 2000);
        return;
      }
    } finally {
      if (!pending) setBusy(false);
    }
  }

  function choose(choice) {
    if (busy || pending || !current || paused) return;
    if (!revealed && choice !== "pass") return;  // read it first, or pass
    const flagged = !!(current.flags && current.flags.length);
    if (choice === "pass" && !flagged) return;
    pending = {
      body: {
        rating_id: newId(), pair_id: current.pair_id, choice: choice,
        reason: $("reason").value, client_ms: revealed ? elapsedMs() : 0, revise: revising, revealed: revealed,
      },
    };
    setStatus("Saving...");
    send();
  }

  async function back() {
    if (busy || pending || paused || !rated.length) return;
    const target = current && revising ? rated[rated.indexOf(current.pair_id) - 1] : rated[rated.length - 1];
    if (target === undefined) return;
    setBusy(true);
    try {
      const data = await api("/api/pair?id=" + encodeURIComponent(target));
      show(data.pair, true);
      setStatus("Rate it again to change your choice.");
    } catch (err) {
      setStatus("Could not go back: " + err.message, true);
    } finally {
      setBusy(false);
    }
  }

  async function loadNext() {
    try {
      const data = await api("/api/next");
      $("rater").textContent = data.rater;
      if (!rated.length && data.last_rated) rated.push(data.last_rated);  // Back works after a reload
      showProgress(data.progress);
      show(data.pair, false);
      showWellbeing(data.wellbeing);
    } catch (err) {
      const hint = (err.status === 401 || err.status === 403) ? " Open your personal link again." : "";
      setStatus("Could not load a pair: " + err.message + "." + hint, true);
      if (!err.status || err.status >= 500) setTimeout(loadNext, 3000);
    }
  }

  for (const btn of document.querySelectorAll("button[data-choice]")) {
    btn.addEventListener("click", () => choose(btn.dataset.choice));
  }
  $("btn-back").addEventListener("click", back);
  $("btn-back-done").addEventListener("click", back);
  $("btn-reveal").addEventListener("click", reveal);
  $("btn-pass").addEventListener("click", () => choose("pass"));
  $("btn-resume").addEventListener("click", resume);

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = e.target && e.target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const key = e.key.toLowerCase();
    if (paused) {
      if (key === "enter") { e.preventDefault(); resume(); }
      return;
    }
    if (key === "v") { e.preventDefault(); reveal(); }
    else if (key === "p") { e.preventDefault(); choose("pass"); }
    else if (key in CHOICE_KEYS) { e.preventDefault(); choose(CHOICE_KEYS[key]); }
    else if (key === "u" || key === "backspace") { e.preventDefault(); back(); }
    else if (key === "r") { e.preventDefault(); $("reason").focus(); }
  });

  loadNext();
})();
"""
