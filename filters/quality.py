"""A trainable quality classifier, as GPT-3 (Brown et al. 2020, appendix A) and DCLM (Li et al.
2024) filtered Common Crawl: a fastText model separating reference text (books, papers,
Wikipedia: positives) from random crawl (negatives), applied as a score.

The model is trained by :func:`filters.quality_train.train_quality_model` (``curate quality
train``) and saved with a JSON sidecar (``quality.bin.json``, read here by
:func:`load_model_info`) recording its labels, the text normalisation used at training time
(the filter applies exactly the same one) and the held-out metrics.

The ``quality`` filter writes ``quality_score`` (the positive-class probability) and drops by
``threshold`` or keeps the ``keep_top`` fraction (see :class:`Quality` for how the quantile is
computed exactly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.ranges import RATIO, Range

from .base import Filter, file_digest, register, require_file
from .language import load_fasttext
from .text import normalize_for_fasttext

POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__lq"
DEFAULT_MAX_CHARS = 20_000


def sidecar_path(model_path: str | Path) -> Path:
    return Path(f"{model_path}.json")


def load_model_info(model_path: str | Path) -> dict[str, Any]:
    """The JSON written next to a model by training; {} for a foreign fastText model."""
    path = sidecar_path(model_path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: unreadable model info ({exc})") from None


@register
@dataclass
class Quality(Filter):
    """fastText quality classifier (train it with ``curate quality train``).

    Writes ``quality_score``: the probability of the positive label (``positive_label``,
    read from the model's ``.json`` sidecar, else ``__label__hq``) for the text normalised as
    at training time. Then either

    - ``threshold`` (default 0.5): drops documents scoring below it (``low_score``); or
    - ``keep_top`` (a fraction, e.g. 0.1): keeps the best-scoring fraction of the documents
      that reach this filter (``not_in_top_fraction``). A quantile needs the whole score
      distribution, so ``curate filter`` first makes a calibration pass over all its inputs
      (running the filters before this one, then scoring), takes the score of the
      ceil(keep_top x n)-th best document as the cut, and records it in the manifest as
      ``keep_top_threshold``. The cut is exact: documents scoring at least the cut are kept
      (ties at the cut are all kept, so a few more than the fraction may survive; the
      manifest says how many). Setting ``keep_top_threshold`` by hand reuses an earlier
      calibration without the extra pass.
    """

    name = "quality"
    paths = ("model",)
    summary = "fastText quality classifier: score, threshold or keep the top fraction"
    reasons = ("low_score", "not_in_top_fraction")

    model: str = ""
    threshold: float = 0.5
    keep_top: float | None = None
    keep_top_threshold: float | None = None
    positive_label: str = ""

    bounds = {
        "threshold": RATIO,
        "keep_top": Range(0.0, 1.0, low_open=True),  # keeping none of the documents is no filter
        "keep_top_threshold": RATIO,
    }

    def validate(self) -> None:
        if not self.model:
            raise ConfigError(f"{self.name}: parameter 'model' is required (train one with `curate quality train`)")
        require_file(self.model, "model", self.name)
        info = load_model_info(self.model)
        self._label = self.positive_label or info.get("positive_label", POSITIVE_LABEL)
        norm = info.get("normalization", {})
        self._max_chars = int(norm.get("max_chars", DEFAULT_MAX_CHARS))
        self._lowercase = bool(norm.get("lowercase", True))
        self._split_punct = bool(norm.get("split_punct", True))
        self._model_obj: Any = None

    def fingerprint(self) -> dict[str, Any]:
        return {"model_sha256": file_digest(self.model)}

    def setup(self) -> None:
        if self.keep_top is not None and self.keep_top_threshold is None:
            raise CurateError(
                "quality: keep_top needs the score distribution; run it through `curate filter` "
                "(which calibrates it) or set keep_top_threshold"
            )
        self._model_obj = load_fasttext(self.model)
        labels = self._model_obj.get_labels()
        if self._label not in labels:
            raise ConfigError(f"quality: model {self.model} has no label {self._label!r} (labels: {', '.join(labels)})")

    def predict(self, text: str) -> float:
        if self._model_obj is None:
            self._model_obj = load_fasttext(self.model)
        line = normalize_for_fasttext(text, self._max_chars, self._lowercase, self._split_punct)
        labels, probs = self._model_obj.predict(line, k=-1, on_unicode_error="replace")
        for label, p in zip(labels, probs):
            if label == self._label:
                return min(float(p), 1.0)
        return 0.0

    def apply(self, doc: Document) -> str | None:
        score = self.predict(doc.text or "")
        doc.quality_score = score
        self.score(doc, "score", score)
        if self.keep_top is not None:
            return None if score >= self.keep_top_threshold else "not_in_top_fraction"  # type: ignore[operator]
        return None if score >= self.threshold else "low_score"
