"""Language identification with fastText's ``lid.176`` model (Joulin et al. 2016, "Bag of Tricks
for Efficient Text Classification"; model: https://fasttext.cc/docs/en/language-identification.html).

The compressed model (``lid.176.ftz``, 0.9 MB, 176 languages) ships with the project in
``filters/data/``, so nothing is downloaded at run time. It is loaded once per process, on the
first document (after the worker fork), and shared by every language filter of the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, RATIO, SIZE

from .base import DATA_DIR, Filter, file_digest, register, require_file
from .text import WORD_RE, flatten_lines

DEFAULT_LID_MODEL = DATA_DIR / "lid.176.ftz"

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_fasttext(path: str | Path) -> Any:
    """A fastText model, loaded once per process and path."""
    key = str(Path(path).resolve())
    model = _MODELS.get(key)
    if model is None:
        with _LOCK:
            model = _MODELS.get(key)
            if model is None:
                import fasttext

                try:
                    model = fasttext.load_model(key)
                except ValueError as exc:
                    raise ConfigError(f"{path}: not a fastText model ({exc})") from None
                _MODELS[key] = model
    return model


@register
@dataclass
class Language(Filter):
    """fastText ``lid.176`` language ID; writes ``language`` and ``language_score``.

    The text, with newlines flattened to spaces (fastText's predict takes one line) and cut to
    ``max_chars`` characters (2,000, a few hundred words: the prediction averages word and
    character n-gram vectors, so the start of a page identifies its language as well as the
    whole page does, and the quantized model's cost grows with the length), is classified.
    ``language`` is the top label (ISO 639 code as the model names it, ``en``, ``zh`` ...),
    ``language_score`` its probability.

    Keeps a document when ``languages`` is empty and the top score is at least ``min_score``
    (0.65, FineWeb's threshold), or when any language of ``languages`` has at least
    ``min_score``. Reasons: ``no_text`` (nothing but whitespace, digits or punctuation: no
    language to identify), ``low_score`` (no language reaches ``min_score``) and
    ``excluded_language`` (a language reaches it but is not in ``languages``). ``model``
    points to another fastText language model with ``__label__xx`` labels.
    """

    name = "language"
    paths = ("model",)
    summary = "fastText lid.176 language ID: keep-list and minimum score"
    reasons = ("no_text", "low_score", "excluded_language")

    languages: list[str] = field(default_factory=list)
    min_score: float = 0.65
    model: str = ""
    max_chars: int = 2_000
    top_k: int = 3

    bounds = {
        "min_score": RATIO,
        "max_chars": COUNT,  # 0: the whole text
        "top_k": SIZE,
    }

    def validate(self) -> None:
        if self.model:
            require_file(self.model, "model", self.name)
        self._keep = frozenset(self.languages)
        self._model_obj: Any = None

    def model_path(self) -> Path:
        return Path(self.model).expanduser() if self.model else DEFAULT_LID_MODEL

    def fingerprint(self) -> dict[str, Any]:
        return {"model_sha256": file_digest(self.model_path())}

    def setup(self) -> None:
        self._model_obj = load_fasttext(self.model_path())

    def predict(self, text: str) -> list[tuple[str, float]]:
        """[(language, probability)] best first (``top_k`` of them) for one text."""
        if self._model_obj is None:
            self.setup()
        line = flatten_lines(text, self.max_chars)
        k = max(self.top_k, 1)
        labels, probs = self._model_obj.predict(line, k=k, on_unicode_error="replace")
        return [(label.replace("__label__", ""), min(float(p), 1.0)) for label, p in zip(labels, probs)]

    def apply(self, doc: Document) -> str | None:
        text = doc.text or ""
        if not _has_letters(text):
            doc.language, doc.language_score = None, None
            return "no_text"
        predictions = self.predict(text)
        best, score = predictions[0]
        doc.language, doc.language_score = best, score
        self.score(doc, "score", score)
        if self._keep:
            wanted = max((p for lang, p in predictions if lang in self._keep), default=0.0)
            if wanted >= self.min_score:
                return None
            return "low_score" if score < self.min_score else "excluded_language"
        return None if score >= self.min_score else "low_score"


def _has_letters(text: str) -> bool:
    """True when the text has at least one word with a letter (cheap: stops at the first)."""
    for match in WORD_RE.finditer(text):
        if not match.group().isdigit() and any(c.isalpha() for c in match.group()):
            return True
    return False
