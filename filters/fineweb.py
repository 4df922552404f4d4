"""FineWeb's additional quality rules (Penedo et al. 2024, "The FineWeb Datasets: Decanting the
Web for the Finest Text Data at Scale", section 3.3 "Developing additional heuristic filters").
"""

from __future__ import annotations

from dataclasses import dataclass

from curate.core.document import Document
from curate.core.ranges import COUNT, NON_NEGATIVE, RATIO

from .base import Filter, list_field, register
from .text import duplicate_elements, ends_with_terminal, view


@register
@dataclass
class FineWebQuality(Filter):
    """FineWeb's three custom rules plus its list filter; defaults are the published values
    (Penedo et al. 2024, section 3.3; datatrove's ``FineWebQualityFilter``).

    Over the non-empty (stripped) lines, drops a document when:

    - fewer than ``min_punctuated_lines_ratio`` (12 %) of lines end in terminal punctuation
      (``too_few_punctuated_lines``);
    - more than ``max_short_lines_ratio`` (67 %) of lines have at most ``short_line_length``
      (30) characters (``too_many_short_lines``);
    - the characters of lines that repeat an earlier line are more than
      ``max_duplicate_line_chars_ratio`` (1 %) of the text without newlines
      (``duplicate_line_chars``);
    - there are more than ``max_newlines_per_word`` (0.3) newlines per word
      (``too_many_newlines``, FineWeb's "list" rule).

    Empty text is dropped as ``empty``. Terminal punctuation covers many scripts (see
    :data:`filters.text.TERMINAL_PUNCTUATION`), optionally followed by closing quotes or
    brackets; the punctuation rule is skipped for languages
    in ``no_punctuation_languages`` (Thai, Lao). Set a threshold to ``-1`` to disable it.
    """

    name = "fineweb"
    summary = "FineWeb rules: punctuated lines, short lines, duplicated line chars, newlines per word"
    reasons = ("empty", "too_few_punctuated_lines", "too_many_short_lines", "duplicate_line_chars", "too_many_newlines")

    min_punctuated_lines_ratio: float = 0.12
    max_short_lines_ratio: float = 0.67
    short_line_length: int = 30
    max_duplicate_line_chars_ratio: float = 0.01
    max_newlines_per_word: float = 0.3
    no_punctuation_languages: list[str] = list_field("th", "lo")

    bounds = {
        "min_punctuated_lines_ratio": RATIO.or_off(),
        "max_short_lines_ratio": RATIO.or_off(),
        "short_line_length": COUNT,
        "max_duplicate_line_chars_ratio": RATIO.or_off(),
        # Newlines per word: a list of one-word lines has 1, an empty-line-heavy page more.
        "max_newlines_per_word": NON_NEGATIVE.or_off(),
    }

    def apply(self, doc: Document) -> str | None:
        v = view(doc)
        lines = v.nonempty_lines
        if not lines:
            return "empty"
        n = len(lines)
        reason = None
        punct = sum(1 for s in lines if ends_with_terminal(s)) / n
        self.score(doc, "punctuated_lines_ratio", punct)
        if (
            self.min_punctuated_lines_ratio != -1
            and doc.language not in self.no_punctuation_languages
            and punct < self.min_punctuated_lines_ratio
        ):
            reason = "too_few_punctuated_lines"
            if not self.annotate:
                return reason
        limit = self.short_line_length
        short = sum(1 for s in lines if len(s) <= limit) / n
        self.score(doc, "short_lines_ratio", short)
        if reason is None and self.max_short_lines_ratio != -1 and short > self.max_short_lines_ratio:
            reason = "too_many_short_lines"
            if not self.annotate:
                return reason
        text = v.text
        dup_chars = duplicate_elements(lines)[1]
        denominator = len(text) - text.count("\n")
        dup_ratio = dup_chars / denominator if denominator else 0.0
        self.score(doc, "duplicate_line_chars_ratio", dup_ratio)
        if (
            reason is None
            and self.max_duplicate_line_chars_ratio != -1
            and dup_ratio > self.max_duplicate_line_chars_ratio
        ):
            reason = "duplicate_line_chars"
            if not self.annotate:
                return reason
        newlines = text.count("\n") / max(v.n_words, 1)
        self.score(doc, "newlines_per_word", newlines)
        if reason is None and self.max_newlines_per_word != -1 and newlines > self.max_newlines_per_word:
            reason = "too_many_newlines"
        return reason
