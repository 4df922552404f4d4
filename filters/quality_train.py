"""Training the ``quality`` filter's model: ``curate quality train``.

:func:`train_quality_model` streams the examples (read by
:func:`filters.quality_examples.iter_texts`) to temporary files
(bounded memory), shuffles them in buckets, holds out a fraction, trains fastText in a fresh
process and measures precision, recall and ROC AUC on the held-out part. The model is saved
with a JSON sidecar (``quality.bin.json``) recording its labels, the text normalisation used at
training time (the filter applies exactly the same one) and the held-out metrics.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.core.errors import ConfigError, CurateError, InputError
from curate.core.files import atomic_write_json

from .base import file_digest
from .quality import DEFAULT_MAX_CHARS, NEGATIVE_LABEL, POSITIVE_LABEL, sidecar_path
from .quality_examples import iter_texts
from .text import normalize_for_fasttext

N_BUCKETS = 32  # shuffle buckets: each must fit in memory when it is shuffled


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
    "from filters.quality_train import _train_in_this_process\n"
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
    import fasttext  # noqa: F401 - a missing fastText fails here, before the examples are read

    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout}")
    out = Path(output).resolve()  # the fastText subprocess runs in another directory
    out.parent.mkdir(parents=True, exist_ok=True)
    # One generator for the bucket choice and then the shuffles: the model depends on the seed only.
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="curate-quality-", dir=out.parent) as tmp:
        hold_path = os.path.join(tmp, "holdout.txt")
        read = functools.partial(iter_texts, text_field=text_field, txt_unit=txt_unit)
        sides = {"positive": positive, "negative": negative}
        n_train, n_hold = _write_examples(tmp, hold_path, sides, read, rng, seed, holdout, max_docs, max_chars)
        train_path = _shuffle_buckets(tmp, rng)
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
        scores, labels = _score_holdout(tmp_model, hold_path)
        os.replace(tmp_model, out)
    report = _evaluate(scores, labels, str(out), n_train, n_hold, lr_used, lr)
    train = {
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
    }
    _write_model_info(out, report, train, max_chars)
    return report


def _write_examples(
    tmp: str,
    hold_path: str,
    sides: dict[str, list[str]],
    read: Callable[[list[str]], Iterator[str]],
    rng: random.Random,
    seed: int,
    holdout: float,
    max_docs: int | None,
    max_chars: int,
) -> tuple[dict[str, int], dict[str, int]]:
    """Normalise every example into the held-out file or a random shuffle bucket (streamed:
    memory stays bounded); returns the (train, held-out) counts per side."""
    n_train = {"positive": 0, "negative": 0}
    n_hold = {"positive": 0, "negative": 0}
    labels = {"positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL}
    buckets = [open(_bucket_path(tmp, i), "w", encoding="utf-8") for i in range(N_BUCKETS)]
    with open(hold_path, "w", encoding="utf-8") as hold:
        for side, paths in sides.items():
            count = 0
            for index, text in enumerate(read(paths)):
                if max_docs is not None and count >= max_docs:
                    break
                line = normalize_for_fasttext(text, max_chars)
                if not line:
                    continue
                count += 1
                # By a hash of (seed, side, index): the same documents are held out on every run.
                if _is_holdout(seed, side, index, holdout):
                    hold.write(f"{labels[side]} {line}\n")
                    n_hold[side] += 1
                else:
                    buckets[rng.randrange(N_BUCKETS)].write(f"{labels[side]} {line}\n")
                    n_train[side] += 1
    for fh in buckets:
        fh.close()
    for side in ("positive", "negative"):
        if n_train[side] == 0:
            raise InputError(f"no {side} training documents (check --{side})")
        if n_hold[side] == 0:
            raise InputError(f"too few {side} documents to hold out {holdout:.0%} for evaluation")
    return n_train, n_hold


def _bucket_path(tmp: str, index: int) -> str:
    return os.path.join(tmp, f"b{index:02d}.txt")


def _shuffle_buckets(tmp: str, rng: random.Random) -> str:
    """Bucketed shuffle: each bucket fits in memory; the buckets were filled at random.
    Returns the training file."""
    train_path = os.path.join(tmp, "train.txt")
    with open(train_path, "w", encoding="utf-8") as train_fh:
        for i in range(N_BUCKETS):
            path = _bucket_path(tmp, i)
            with open(path, encoding="utf-8") as fh:
                lines = fh.readlines()
            rng.shuffle(lines)
            train_fh.writelines(lines)
            os.unlink(path)
    return train_path


def _score_holdout(model_path: str, hold_path: str) -> tuple[list[float], list[int]]:
    """The model's positive-class probability for each held-out example, and its true label."""
    import fasttext

    model = fasttext.load_model(model_path)
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
    return scores, labels


def _evaluate(
    scores: list[float],
    labels: list[int],
    model_path: str,
    n_train: dict[str, int],
    n_hold: dict[str, int],
    lr_used: float,
    lr: float,
) -> QualityReport:
    """Held-out precision, recall and accuracy at 0.5, and ROC AUC."""
    tp = sum(1 for s, y in zip(scores, labels) if s >= 0.5 and y)
    fp = sum(1 for s, y in zip(scores, labels) if s >= 0.5 and not y)
    fn = sum(1 for s, y in zip(scores, labels) if s < 0.5 and y)
    correct = sum(1 for s, y in zip(scores, labels) if (s >= 0.5) == bool(y))
    return QualityReport(
        model_path=model_path,
        n_train=n_train,
        n_holdout=n_hold,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        accuracy=correct / len(labels),
        roc_auc=roc_auc(scores, labels),
        lr=lr_used,
        lr_lowered=lr_used != lr,
    )


def _write_model_info(out: Path, report: QualityReport, train: dict[str, Any], max_chars: int) -> None:
    """The sidecar the filter reads: labels, the normalisation to repeat, how it was trained."""
    info = {
        "kind": "curate.quality",
        "positive_label": POSITIVE_LABEL,
        "negative_label": NEGATIVE_LABEL,
        "normalization": {"max_chars": max_chars, "lowercase": True, "split_punct": True},
        "train": train,
        "counts": {"train": report.n_train, "holdout": report.n_holdout},
        "metrics": {
            "precision": report.precision,
            "recall": report.recall,
            "accuracy": report.accuracy,
            "roc_auc": report.roc_auc,
        },
        "model_sha256": file_digest(out),
    }
    atomic_write_json(sidecar_path(out), info)
