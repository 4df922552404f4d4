"""A trainable quality classifier, as GPT-3 (Brown et al. 2020, appendix A) and DCLM (Li et al.
2024) filtered Common Crawl: a fastText model separating reference text (books, papers,
Wikipedia: positives) from random crawl (negatives), applied as a score.

:func:`train_quality_model` streams the examples to temporary files (bounded memory),
shuffles them in buckets, holds out a fraction, trains fastText and measures precision,
recall and ROC AUC on the held-out part. The model is saved with a JSON sidecar
(``quality.bin.json``) recording its labels, the text normalisation used at training time (the
filter applies exactly the same one) and the held-out metrics.

The ``quality`` filter writes ``quality_score`` (the positive-class probability) and drops by
``threshold`` or keeps the ``keep_top`` fraction (see :class:`Quality` for how the quantile is
computed exactly).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError, InputError

from .base import RATIO, Filter, Range, file_digest, register, require_file
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


# ---------------------------------------------------------------------------- training


def iter_texts(paths: Iterable[str], text_field: str = "text", txt_unit: str = "line") -> Iterator[str]:
    """Texts from Parquet document shards (files or directories), JSONL (``text_field``) or
    plain text files (one document per line, or per blank-line-separated paragraph with
    ``txt_unit="paragraph"``), or folders of such files; ``.gz`` files are read transparently."""
    from curate.core.shards import expand_parquet_inputs, read_tables

    for path in paths:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{path}: no such file or directory")
        if p.is_dir() and not any(p.glob("*.parquet")):
            # A folder of text / Markdown / JSONL files (e.g. samples/books): each file in turn.
            files = sorted(str(f) for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise InputError(f"{path}: empty directory")
            yield from iter_texts(files, text_field=text_field, txt_unit=txt_unit)
            continue
        if p.is_dir() or p.suffix == ".parquet":
            for f in expand_parquet_inputs([str(p)]):
                for table in read_tables(f, columns=["text"]):
                    yield from (t for t in table.column("text").to_pylist() if t)
            continue
        name = p.name[:-3] if p.name.endswith(".gz") else p.name
        opener = gzip.open if p.name.endswith(".gz") else open
        try:
            with opener(p, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
                if name.endswith((".jsonl", ".json", ".ndjson")):
                    for lineno, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            text = json.loads(line).get(text_field)
                        except (json.JSONDecodeError, AttributeError):
                            raise InputError(f"{path}:{lineno}: not a JSON object per line") from None
                        if isinstance(text, str) and text.strip():
                            yield text
                elif txt_unit == "paragraph":
                    block: list[str] = []
                    for line in fh:
                        if line.strip():
                            block.append(line)
                        elif block:
                            yield "".join(block)
                            block = []
                    if block:
                        yield "".join(block)
                else:
                    for line in fh:
                        if line.strip():
                            yield line
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read ({exc})") from None


@dataclass
class QualityReport:
    model_path: str
    n_train: dict[str, int]
    n_holdout: dict[str, int]
    precision: float
    recall: float
    accuracy: float
    roc_auc: float
    lr: float = 0.0
    lr_lowered: bool = False

    def lines(self) -> list[str]:
        return [
            *(
                [f"note: training diverged at the requested learning rate; used lr={self.lr:g}"]
                if self.lr_lowered
                else []
            ),
            f"trained on {self.n_train['positive']:,} positive + {self.n_train['negative']:,} negative documents",
            f"held out {self.n_holdout['positive']:,} positive + {self.n_holdout['negative']:,} negative",
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  accuracy {self.accuracy:.3f}  ROC AUC {self.roc_auc:.3f}",
            f"model: {self.model_path}",
        ]


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _is_holdout(seed: int, side: str, index: int, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{side}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _train_in_this_process(args: dict[str, Any]) -> dict[str, Any]:
    """Train and save a model; runs in a fresh interpreter (see :func:`_train_fasttext`).

    A learning rate too high for the data diverges ("Encountered NaN"): it is retried, then
    halved, at most four times; the rate finally used is returned and recorded."""
    import fasttext

    kwargs = dict(args["params"])
    lr = float(kwargs.pop("lr"))
    for _halving in range(5):
        for _retry in range(3):
            start = time.monotonic()
            try:
                model = fasttext.train_supervised(lr=lr, **kwargs)
            except RuntimeError as exc:
                if "NaN" not in str(exc):
                    return {"error": f"fastText: {exc}"}
                if time.monotonic() - start > 60.0:
                    break  # a real divergence after real training time: lower the rate
                continue
            model.save_model(args["output"])
            return {"lr": lr}
        lr /= 2
    return {"error": f"fastText training diverged (NaN) even with lr={lr * 2:g}; check the training data"}


_TRAIN_SCRIPT = (
    "import json, sys\n"
    "from filters.quality import _train_in_this_process\n"
    "print(json.dumps(_train_in_this_process(json.loads(sys.argv[1]))))\n"
)


def _train_fasttext(output: str, **params: Any) -> float:
    """Train fastText in a fresh Python process and save the model to ``output``; returns
    the learning rate used.

    Why a separate process: the fastText wheel reads some training buffer before writing
    it, so in a process whose heap has been used (numpy arrays allocated and freed, as in
    any real program) training intermittently produces NaN or a degenerate model, while a
    fresh interpreter trains reliably and reproducibly."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    payload = json.dumps({"output": output, "params": params})
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN_SCRIPT, payload], capture_output=True, text=True, env=env, cwd=root
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if proc.returncode != 0 or not isinstance(result, dict):
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CurateError(f"fastText training failed: {detail}")
    if "error" in result:
        raise CurateError(result["error"])
    return float(result["lr"])


def train_quality_model(
    positive: list[str],
    negative: list[str],
    output: str,
    *,
    holdout: float = 0.1,
    seed: int = 0,
    max_docs: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    text_field: str = "text",
    txt_unit: str = "line",
    epoch: int = 5,
    lr: float = 0.1,
    dim: int = 64,
    word_ngrams: int = 2,
    min_count: int = 1,
    bucket: int = 200_000,
    threads: int = 1,
) -> QualityReport:
    """Train a fastText positive-vs-negative classifier; see the module docstring.

    ``threads=1`` (default) makes training deterministic for a given seed (byte-identical
    models); more threads are faster but fastText's lock-free updates then vary from run to
    run.
    """
    import fasttext

    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout}")
    out = Path(output).resolve()  # the fastText subprocess runs in another directory
    out.parent.mkdir(parents=True, exist_ok=True)
    n_buckets = 32
    rng = random.Random(seed)
    n_train = {"positive": 0, "negative": 0}
    n_hold = {"positive": 0, "negative": 0}
    with tempfile.TemporaryDirectory(prefix="curate-quality-", dir=out.parent) as tmp:
        buckets = [open(os.path.join(tmp, f"b{i:02d}.txt"), "w", encoding="utf-8") for i in range(n_buckets)]
        hold_path = os.path.join(tmp, "holdout.txt")
        with open(hold_path, "w", encoding="utf-8") as hold:
            for side, label, paths in (("positive", POSITIVE_LABEL, positive), ("negative", NEGATIVE_LABEL, negative)):
                count = 0
                for index, text in enumerate(iter_texts(paths, text_field, txt_unit)):
                    if max_docs is not None and count >= max_docs:
                        break
                    line = normalize_for_fasttext(text, max_chars)
                    if not line:
                        continue
                    count += 1
                    if _is_holdout(seed, side, index, holdout):
                        hold.write(f"{label} {line}\n")
                        n_hold[side] += 1
                    else:
                        buckets[rng.randrange(n_buckets)].write(f"{label} {line}\n")
                        n_train[side] += 1
        for fh in buckets:
            fh.close()
        for side in ("positive", "negative"):
            if n_train[side] == 0:
                raise InputError(f"no {side} training documents (check --{side})")
            if n_hold[side] == 0:
                raise InputError(f"too few {side} documents to hold out {holdout:.0%} for evaluation")
        # Bucketed shuffle: each bucket fits in memory; the buckets were filled at random.
        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w", encoding="utf-8") as train_fh:
            for i in range(n_buckets):
                path = os.path.join(tmp, f"b{i:02d}.txt")
                with open(path, encoding="utf-8") as fh:
                    lines = fh.readlines()
                rng.shuffle(lines)
                train_fh.writelines(lines)
                os.unlink(path)
        tmp_model = os.path.join(tmp, "model.bin")
        lr_used = _train_fasttext(
            tmp_model,
            input=train_path,
            epoch=epoch,
            lr=lr,
            dim=dim,
            wordNgrams=word_ngrams,
            minCount=min_count,
            bucket=bucket,
            thread=threads,
            seed=seed,
            verbose=0,
            loss="softmax",
        )
        model = fasttext.load_model(tmp_model)
        scores: list[float] = []
        labels: list[int] = []
        with open(hold_path, encoding="utf-8") as fh:
            for line in fh:
                label, _, text = line.rstrip("\n").partition(" ")
                got, probs = model.predict(text, k=-1)
                p = dict(zip(got, (float(x) for x in probs))).get(POSITIVE_LABEL, 0.0)
                scores.append(min(p, 1.0))
                labels.append(1 if label == POSITIVE_LABEL else 0)
        del model
        os.replace(tmp_model, out)

    tp = sum(1 for s, y in zip(scores, labels) if s >= 0.5 and y)
    fp = sum(1 for s, y in zip(scores, labels) if s >= 0.5 and not y)
    fn = sum(1 for s, y in zip(scores, labels) if s < 0.5 and y)
    correct = sum(1 for s, y in zip(scores, labels) if (s >= 0.5) == bool(y))
    report = QualityReport(
        model_path=str(out),
        n_train=n_train,
        n_holdout=n_hold,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        accuracy=correct / len(labels),
        roc_auc=roc_auc(scores, labels),
        lr=lr_used,
        lr_lowered=lr_used != lr,
    )
    info = {
        "kind": "curate.quality",
        "positive_label": POSITIVE_LABEL,
        "negative_label": NEGATIVE_LABEL,
        "normalization": {"max_chars": max_chars, "lowercase": True, "split_punct": True},
        "train": {
            "positive": positive,
            "negative": negative,
            "seed": seed,
            "holdout": holdout,
            "epoch": epoch,
            "lr": lr_used,
            "lr_requested": lr,
            "dim": dim,
            "word_ngrams": word_ngrams,
            "min_count": min_count,
            "bucket": bucket,
            "max_docs": max_docs,
        },
        "counts": {"train": n_train, "holdout": n_hold},
        "metrics": {
            "precision": report.precision,
            "recall": report.recall,
            "accuracy": report.accuracy,
            "roc_auc": report.roc_auc,
        },
        "model_sha256": file_digest(out),
    }
    from curate.core.files import atomic_write_json

    atomic_write_json(sidecar_path(out), info)
    return report
