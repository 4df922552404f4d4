"""Gopher heuristics (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", appendix A.1.1 and Table A1): a quality filter and a repetition filter.

Both use the shared word split of :mod:`filters.text` (computed once per document). Words are
runs of letters/digits; punctuation on its own is never a word. In scripts written without
spaces (Chinese, Japanese, Thai ...) each character counts as a word. How the English-calibrated
rules are scoped is described on each filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, NON_NEGATIVE, RATIO, SIZE, check_value

from .base import Filter, list_field, register
from .text import (
    BULLETS,
    duplicate_elements,
    duplicate_ngram_chars,
    ngram_hashes,
    top_ngram_chars,
    view,
)

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@register
@dataclass
class GopherQuality(Filter):
    """Gopher quality rules; defaults are the published thresholds (Rae et al. 2021, A.1.1).

    Drops a document when (in this order):

    - it has fewer than ``min_words`` (50) or more than ``max_words`` (100,000) words;
    - the mean word length is below ``min_mean_word_length`` (3) or above
      ``max_mean_word_length`` (10) characters;
    - the ``#`` or the ellipsis (``...``/``…``) to word ratio is above ``max_symbol_word_ratio``
      (0.1), each symbol separately;
    - more than ``max_bullet_lines_ratio`` (90 %) of its non-empty lines start with a bullet,
      or more than ``max_ellipsis_lines_ratio`` (30 %) end with an ellipsis;
    - fewer than ``min_alpha_words_ratio`` (80 %) of its words contain a letter (punctuation
      is not a word here, unlike datatrove, whose tokens include punctuation and which so
      drops clean articles with many dashes and quotes);
    - it contains fewer than ``min_stop_words`` (2) distinct words of ``stop_words`` (the,
      be, to, of, and, that, have, with).

    Scoping: the stop-word rule is English-specific. It applies to documents whose
    ``language`` is in ``stop_words_languages`` (default ``["en"]``) and to documents with no
    language at all (no language filter ran: Gopher's English-only setting). Put the
    ``language`` filter first to keep other languages from being dropped by it. The mean word
    length rule is computed over space-delimited words and skipped for text written mostly in
    a no-space script (each character counts as a word there; see :mod:`filters.text`).
    Set any threshold to ``-1`` to disable that rule.
    """

    name = "gopher_quality"
    summary = "Gopher quality rules: word counts, word length, symbols, bullets, letters, stop words"
    reasons = (
        "too_few_words",
        "too_many_words",
        "mean_word_length_too_short",
        "mean_word_length_too_long",
        "too_many_hashes",
        "too_many_ellipses",
        "too_many_bullet_lines",
        "too_many_ellipsis_lines",
        "too_few_alpha_words",
        "too_few_stop_words",
    )

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: list(GOPHER_STOP_WORDS))
    stop_words_languages: list[str] = list_field("en")

    bounds = {
        "min_words": COUNT.or_off(),
        "max_words": COUNT.or_off(),
        "min_mean_word_length": NON_NEGATIVE.or_off(),
        "max_mean_word_length": NON_NEGATIVE.or_off(),
        # Symbols per word: a page of "# # #" has more hashes than words, so no upper bound.
        "max_symbol_word_ratio": NON_NEGATIVE.or_off(),
        "max_bullet_lines_ratio": RATIO.or_off(),
        "max_ellipsis_lines_ratio": RATIO.or_off(),
        "min_alpha_words_ratio": RATIO.or_off(),
        "min_stop_words": COUNT.or_off(),
    }
    ordered = (("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length"))

    def validate(self) -> None:
        self._stop = frozenset(w.lower() for w in self.stop_words)
        if self.min_stop_words != -1 and self.min_stop_words > len(self._stop):
            # More distinct stop words than the list holds: every document would be dropped.
            raise ConfigError(
                f"{self.who}: min_stop_words = {self.min_stop_words} is out of range; allowed: an integer in "
                f"[0, {len(self._stop)}] (the distinct entries of stop_words), or -1 to turn the rule off"
            )
        self._stop_langs = frozenset(self.stop_words_languages)

    def apply(self, doc: Document) -> str | None:
        v = view(doc)
        text = v.text
        n_words = v.n_words
        self.score(doc, "n_words", n_words)
        reason = None
        if self.min_words != -1 and n_words < self.min_words:
            reason = "too_few_words"
        elif self.max_words != -1 and n_words > self.max_words:
            reason = "too_many_words"
        if reason and not self.annotate:
            return reason

        mean_len = v.mean_word_length
        self.score(doc, "mean_word_length", mean_len)
        if reason is None and mean_len is not None:
            if self.min_mean_word_length != -1 and mean_len < self.min_mean_word_length:
                reason = "mean_word_length_too_short"
            elif self.max_mean_word_length != -1 and mean_len > self.max_mean_word_length:
                reason = "mean_word_length_too_long"

        denominator = max(n_words, 1)
        hash_ratio = text.count("#") / denominator
        ellipsis_ratio = (text.count("...") + text.count("…")) / denominator
        self.score(doc, "hash_word_ratio", hash_ratio)
        self.score(doc, "ellipsis_word_ratio", ellipsis_ratio)
        if reason is None and self.max_symbol_word_ratio != -1:
            if hash_ratio > self.max_symbol_word_ratio:
                reason = "too_many_hashes"
            elif ellipsis_ratio > self.max_symbol_word_ratio:
                reason = "too_many_ellipses"

        lines = v.nonempty_lines
        if lines:
            bullet = sum(1 for s in lines if s.startswith(BULLETS)) / len(lines)
            ellipsis_lines = sum(1 for s in lines if s.endswith(("...", "…"))) / len(lines)
        else:
            bullet = ellipsis_lines = 0.0
        self.score(doc, "bullet_lines_ratio", bullet)
        self.score(doc, "ellipsis_lines_ratio", ellipsis_lines)
        if reason is None:
            if self.max_bullet_lines_ratio != -1 and bullet > self.max_bullet_lines_ratio:
                reason = "too_many_bullet_lines"
            elif self.max_ellipsis_lines_ratio != -1 and ellipsis_lines > self.max_ellipsis_lines_ratio:
                reason = "too_many_ellipsis_lines"

        alpha_ratio = v.n_alpha_words / n_words if n_words else 0.0
        self.score(doc, "alpha_words_ratio", alpha_ratio)
        if reason is None and self.min_alpha_words_ratio != -1 and alpha_ratio < self.min_alpha_words_ratio:
            reason = "too_few_alpha_words"

        if self.min_stop_words != -1 and (doc.language is None or doc.language in self._stop_langs):
            stop = self._stop
            found: set[str] = set()
            for w in v.words_lower:
                if w in stop:
                    found.add(w)
                    if len(found) >= self.min_stop_words and not self.annotate:
                        break
            self.score(doc, "stop_words", len(found))
            if reason is None and len(found) < self.min_stop_words:
                reason = "too_few_stop_words"
        return reason


def _pairs(value: list[list[float]], key: str, who: str) -> list[tuple[int, float]]:
    """``[[n, max_fraction], ...]`` checked: n an integer >= 1, the fraction in [0, 1] or -1."""
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(f"{who}: {key}[{i}] = {item!r} is not an [n, max_fraction] pair")
        n, limit = item
        if not float(n).is_integer():
            raise ConfigError(f"{who}: {key}[{i}] n-gram size = {n!r} is out of range; allowed: an integer >= 1")
        check_value(who, f"{key}[{i}] n-gram size", int(n), SIZE, integer=True)
        check_value(who, f"{key}[{i}] max fraction (n = {int(n)})", limit, RATIO.or_off())
        out.append((int(n), float(limit)))
    return out


@register
@dataclass
class GopherRepetition(Filter):
    """Gopher repetition rules; defaults from Rae et al. 2021, Table A1.

    Drops a document when, in this order:

    - duplicate paragraphs (blocks separated by blank lines, each equal to an earlier one) are
      more than ``dup_para_frac`` (30 %) of the paragraphs, or their characters more than
      ``dup_para_char_frac`` (20 %) of the text;
    - the same for lines: ``dup_line_frac`` (30 %), ``dup_line_char_frac`` (20 %);
    - for n = 2, 3, 4 the most frequent n-gram (when it occurs more than once) covers more
      than 20 %, 18 %, 16 % of the characters (``top_ngrams``);
    - for n = 5..10 the n-grams repeating an earlier n-gram cover more than 15 %, 14 %, 13 %,
      12 %, 11 %, 10 % of the characters (``dup_ngrams``).

    Character fractions use word characters over the length of the text, and count a
    character once however many overlapping n-grams cover it. N-grams are over the shared
    word split; in no-space scripts they are character n-grams. A threshold of ``-1`` (or an
    empty list) disables a rule.
    """

    name = "gopher_repetition"
    summary = "Gopher repetition rules: duplicate lines/paragraphs, top and duplicated n-grams"
    reasons = (
        "duplicate_paragraphs",
        "duplicate_paragraph_chars",
        "duplicate_lines",
        "duplicate_line_chars",
        "top_2gram",
        "top_3gram",
        "top_4gram",
        "duplicate_5grams",
        "duplicate_6grams",
        "duplicate_7grams",
        "duplicate_8grams",
        "duplicate_9grams",
        "duplicate_10grams",
    )

    dup_para_frac: float = 0.30
    dup_para_char_frac: float = 0.20
    dup_line_frac: float = 0.30
    dup_line_char_frac: float = 0.20
    top_ngrams: list[list[float]] = field(default_factory=lambda: [[2, 0.20], [3, 0.18], [4, 0.16]])
    dup_ngrams: list[list[float]] = field(
        default_factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]
    )

    bounds = {
        "dup_para_frac": RATIO.or_off(),
        "dup_para_char_frac": RATIO.or_off(),
        "dup_line_frac": RATIO.or_off(),
        "dup_line_char_frac": RATIO.or_off(),
    }

    def validate(self) -> None:
        # The n-gram lists are pairs, checked here (the same ranges: n >= 1, fraction in [0, 1]).
        self._top = _pairs(self.top_ngrams, "top_ngrams", self.who)
        self._dup = _pairs(self.dup_ngrams, "dup_ngrams", self.who)
        self._n_max = max([n for n, _ in self._top + self._dup], default=1)

    def _check(self, reason: str | None, candidate: str, value: float, limit: float) -> str | None:
        if reason is None and limit != -1 and value > limit:
            return candidate
        return reason

    def apply(self, doc: Document) -> str | None:
        v = view(doc)
        total = len(v.text)
        if total == 0:
            return None  # nothing repeated in an empty text; length rules live elsewhere
        reason = None

        # The same two rules (share of repeated elements, share of characters in them) for
        # paragraphs, then for lines.
        for elements, kind, frac_limit, char_limit in (
            (v.paragraphs, "paragraph", self.dup_para_frac, self.dup_para_char_frac),
            (v.nonempty_lines, "line", self.dup_line_frac, self.dup_line_char_frac),
        ):
            if not elements:
                continue
            n_dup, dup_chars = duplicate_elements(elements)
            frac, char_frac = n_dup / len(elements), dup_chars / total
            short = "para" if kind == "paragraph" else "line"
            self.score(doc, f"dup_{short}_frac", frac)
            self.score(doc, f"dup_{short}_char_frac", char_frac)
            reason = self._check(reason, f"duplicate_{kind}s", frac, frac_limit)
            reason = self._check(reason, f"duplicate_{kind}_chars", char_frac, char_limit)
            if reason and not self.annotate:
                return reason

        if v.n_words < 2:
            return reason
        ids, lengths = v.word_ids
        hashes = ngram_hashes(ids, self._n_max)
        for n, limit in self._top:
            if n not in hashes:
                continue
            frac = top_ngram_chars(hashes[n], lengths, n) / total
            self.score(doc, f"top_{n}gram_char_frac", frac)
            reason = self._check(reason, f"top_{n}gram", frac, limit)
            if reason and not self.annotate:
                return reason
        no_repeat_below = None  # smallest n with no repeated n-gram: none for larger n either
        for n, limit in self._dup:
            if n not in hashes:
                continue
            if no_repeat_below is not None and n > no_repeat_below:
                frac = 0.0
            else:
                frac = duplicate_ngram_chars(hashes[n], lengths, n) / total
                if frac == 0.0:
                    no_repeat_below = n
            self.score(doc, f"dup_{n}gram_char_frac", frac)
            reason = self._check(reason, f"duplicate_{n}grams", frac, limit)
            if reason and not self.annotate:
                return reason
        return reason
