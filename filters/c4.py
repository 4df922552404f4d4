"""C4 cleaning (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", section 2.2; reference code: TensorFlow Datasets ``c4_utils``).

C4 is a line-level cleaner first and a document filter second: it removes lines, then drops
pages that are left with too little text or that contain tell-tale markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from curate.core.document import Document
from curate.core.ranges import COUNT, SIZE

from .base import Filter, list_field, register
from .text import WORD_RE, ends_with_terminal, view

CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@register
@dataclass
class C4Quality(Filter):
    """C4's rules (Raffel et al. 2020, section 2.2, and the TFDS ``c4_utils`` reference code).

    Lines (stripped) are removed when they:

    - contain a whitespace token longer than ``max_word_length`` (1,000 characters);
    - do not end in terminal punctuation (optionally followed by closing quotes or
      brackets), or end in an ellipsis (``terminal_punctuation``);
    - have fewer than ``min_words_per_line`` (3) words;
    - mention "javascript" (``filter_javascript``);
    - contain a cookie/terms-of-use policy phrase (``filter_policy``).

    Wikipedia-style citation marks (``[1]``, ``[edit]``, ``[citation needed]``) are removed
    from lines first (``remove_citations``). The page is then dropped when a kept line
    contains "lorem ipsum" (``lorem_ipsum``) or a curly bracket (``curly_bracket``, C4's
    marker of code), or when the kept lines hold fewer than ``min_sentences`` (5) sentences
    (``too_few_sentences``; sentences are counted by sentence-ending punctuation). Kept pages
    are rewritten to their kept lines.

    Scoping: the terminal-punctuation rule accepts the sentence ends of many scripts (C4's
    own . ! ? would empty every Chinese, Hindi or Arabic page; see
    :data:`filters.text.TERMINAL_PUNCTUATION`), and is
    skipped for documents whose language is in ``no_punctuation_languages`` (Thai and Lao,
    which do not end sentences with a mark; their sentences are counted as space-separated
    segments, the space being their sentence separator). The javascript and policy phrases are English
    and harmless elsewhere. In annotate mode the text is left unchanged and the scores
    describe what cleaning would do. Set a number to ``-1`` to disable its rule.
    """

    name = "c4"
    summary = "C4 line cleaning (terminal punctuation, javascript, policy) and page rules"
    transform = True
    reasons = ("lorem_ipsum", "curly_bracket", "too_few_sentences")

    terminal_punctuation: bool = True
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_sentences: int = 5
    remove_citations: bool = True
    filter_javascript: bool = True
    filter_policy: bool = True
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True
    no_punctuation_languages: list[str] = list_field("th", "lo")

    bounds = {
        "min_words_per_line": COUNT.or_off(),
        # 0 would remove every line with a token at all.
        "max_word_length": SIZE.or_off(),
        "min_sentences": COUNT.or_off(),
    }

    def apply(self, doc: Document) -> str | None:
        v = view(doc)
        check_punct = self.terminal_punctuation and doc.language not in self.no_punctuation_languages
        reason: str | None = None
        kept: list[str] = []
        sentences = 0
        removed: dict[str, int] = {}
        n_lines = 0
        for raw in v.lines:
            line = raw.strip()
            if not line:
                continue
            n_lines += 1
            if (
                self.max_word_length != -1
                and len(line) > self.max_word_length
                and any(len(tok) > self.max_word_length for tok in line.split())
            ):
                removed["long_word"] = removed.get("long_word", 0) + 1
                continue
            if self.remove_citations and "[" in line:
                line = CITATION_RE.sub("", line).strip()
            if check_punct and not ends_with_terminal(line, ellipsis_ok=False):
                removed["no_terminal_punctuation"] = removed.get("no_terminal_punctuation", 0) + 1
                continue
            if self.min_words_per_line != -1 and len(WORD_RE.findall(line)) < self.min_words_per_line:
                removed["too_few_words"] = removed.get("too_few_words", 0) + 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                reason = reason or "lorem_ipsum"
                if not self.annotate:
                    break
            if self.filter_javascript and "javascript" in lower:
                removed["javascript"] = removed.get("javascript", 0) + 1
                continue
            if self.filter_curly_bracket and "{" in line:
                reason = reason or "curly_bracket"
                if not self.annotate:
                    break
            if self.filter_policy and any(p in lower for p in POLICY_PHRASES):
                removed["policy"] = removed.get("policy", 0) + 1
                continue
            # Thai and Lao mark sentence ends with a space, not a character.
            sentences += v.sentence_count(line) if check_punct else len(line.split())
            kept.append(line)

        n_removed = sum(removed.values())
        self.score(doc, "lines_removed_frac", n_removed / n_lines if n_lines else 0.0)
        self.score(doc, "sentences", sentences)
        if reason is None and self.min_sentences != -1 and sentences < self.min_sentences:
            reason = "too_few_sentences"
        if reason is not None and not self.annotate:
            return reason
        for key, n in removed.items():
            self.count(f"lines_removed.{key}", n)
        if not self.annotate and n_removed:
            new_text = "\n".join(kept)
            self.count("docs_changed")
            self.count("chars_removed", len(doc.text) - len(new_text))
            doc.text = new_text
        return reason
