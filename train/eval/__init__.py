"""Evaluating a trained model (``curate eval``): multiple-choice benchmarks scored by
log-likelihood (scoring.py, fewshot.py, choice.py), bits per byte on held-out text per source
(bpb.py), and :func:`run_eval`, which runs both and writes ``eval.json`` (run.py)."""

from .config import EvalConfig
from .run import EVAL_FILE, run_eval

__all__ = ["EVAL_FILE", "EvalConfig", "run_eval"]
