"""Text facts shared by the filters and dedup.

Scripts written without spaces between words (Chinese, Japanese kana, Thai, Lao, Khmer,
Myanmar) have no word boundaries to split on; both the filters' word counts and dedup's
shingles take one character there as one word.
"""

from __future__ import annotations

NO_SPACE_RANGES: list[tuple[int, int]] = [
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
]


def in_no_space_script(cp: int) -> bool:
    """Whether code point ``cp`` belongs to a script written without spaces."""
    return any(lo <= cp <= hi for lo, hi in NO_SPACE_RANGES)
