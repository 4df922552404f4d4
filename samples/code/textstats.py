"""Simple statistics of English text: words, sentences and a readability score.

The Flesch reading-ease formula needs syllable counts; counting vowel groups is a rough
but serviceable estimate for English, and good enough to rank texts by difficulty.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Estimated syllables in an English word (at least one).

    >>> syllables("cat"), syllables("reading"), syllables("make")
    (1, 2, 1)
    """
    w = word.lower()
    groups = len(VOWEL_GROUP.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and groups > 1:
        groups -= 1  # a silent final e
    return max(1, groups)


@dataclass
class TextStats:
    words: int
    sentences: int
    syllables: int
    top_words: list[tuple[str, int]]

    @property
    def words_per_sentence(self) -> float:
        return self.words / self.sentences if self.sentences else 0.0

    @property
    def reading_ease(self) -> float:
        """Flesch reading ease: higher is easier; 60-70 is plain English."""
        if not self.words or not self.sentences:
            return 0.0
        return 206.835 - 1.015 * self.words_per_sentence - 84.6 * (self.syllables / self.words)


def analyze(text: str, top: int = 5) -> TextStats:
    """Count words, sentences and syllables of ``text``."""
    words = WORD.findall(text)
    sentences = max(1, len(SENTENCE_END.findall(text))) if words else 0
    counts = Counter(w.lower() for w in words)
    return TextStats(
        words=len(words),
        sentences=sentences,
        syllables=sum(syllables(w) for w in words),
        top_words=counts.most_common(top),
    )


if __name__ == "__main__":
    import sys

    stats = analyze(sys.stdin.read())
    print(f"words: {stats.words}  sentences: {stats.sentences}  reading ease: {stats.reading_ease:.1f}")
    for word, n in stats.top_words:
        print(f"  {word:<15} {n}")
