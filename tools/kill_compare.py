"""Kill a stage at random moments, rerun it, and compare with an undisturbed run.

    python tools/kill_compare.py                      # crawl, filter, dedup, mix, pretrain; 5 kills each
    python tools/kill_compare.py --stages dedup mix --trials 10 --seed 3

For each stage: one undisturbed run (its time T), then per trial the same command started in
its own process group, SIGKILLed after a seeded random delay in (0.05 T, 0.95 T), rerun to
completion into the same folder, and its outputs compared with the undisturbed run's, file by
file (Parquet bytes; manifests, state and metrics with their timing values removed; checkpoint
tensors), plus any ``*.tmp`` left behind. Inputs are the samples; every stage feeds the next.
Prints one line per trial and a summary per stage; exits 1 if any rerun differs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_outputs import ROOT, digest

PRETRAIN = [
    "--config",
    "samples/train/pretrain_tiny.toml",
    "--set",
    "max_steps=60",
    "--set",
    "checkpoint_every=20",
    "--set",
    "eval_every=20",
    "--set",
    "threads=1",
]


def commands(work: Path, out: Path) -> dict[str, list[str]]:
    """The command of each stage writing to ``out``; their inputs are the undisturbed outputs."""
    return {
        "crawl": ["crawl", "samples/warc", "-o", str(out), "-j", "2", "-q"],
        "filter": ["filter", str(work / "crawl"), "-o", str(out), "--config", "samples/filters.toml", "-j", "2", "-q"],
        "dedup": ["dedup", str(work / "filter"), "-o", str(out), "--verify", "exact", "-j", "2", "-q"],
        "mix": [
            "mix",
            "--source",
            f"web={work / 'dedup'}:0.6",
            "--source",
            "books=samples/books:0.4",
            "--tokens",
            "150k",
            "-o",
            str(out),
            "-q",
        ],
        "pretrain": ["train", "pretrain", "--data", str(work / "mix"), "-o", str(out), *PRETRAIN],
    }


def run(argv: list[str], timeout: float | None = None, kill_after: float | None = None) -> tuple[int, float]:
    """Run ``curate argv`` (exit code, seconds); with ``kill_after``, SIGKILL its whole process
    group then (workers included), as a crashed machine would."""
    env = {**os.environ, "CURATE_PROGRESS": "0"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", *argv],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        proc.wait(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -signal.SIGKILL, time.monotonic() - started
    if proc.returncode != 0 and kill_after is None:
        raise SystemExit(f"curate {' '.join(argv)} failed:\n{proc.stderr.read().decode()}")
    return proc.returncode, time.monotonic() - started


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock" and ".curate" not in p.relative_to(folder).parts
    }


def trial_stage(stage: str, work: Path, trials: int, rng: random.Random) -> int:
    """Undisturbed run into ``work/stage``, then ``trials`` kill-and-rerun trials; returns the
    number of reruns whose outputs differ."""
    reference = work / stage
    _, seconds = run(commands(work, reference)[stage])
    want = snapshot(reference)
    differ = 0
    for k in range(trials):
        out = work / f"{stage}-trial{k}"
        delay = rng.uniform(0.05, 0.95) * seconds
        code, _ = run(commands(work, out)[stage], kill_after=delay)
        killed = code == -signal.SIGKILL
        run(commands(work, out)[stage])  # the rerun: resume or redo
        got = snapshot(out)
        tmp = [str(p.relative_to(out)) for p in out.rglob("*.tmp")]
        same = got == want and not tmp
        differ += not same
        bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        print(
            f"  {stage:9s} trial {k}: {'killed' if killed else 'finished'} at {delay:5.1f}s of {seconds:5.1f}s; "
            f"rerun {'identical' if same else 'DIFFERS: ' + ', '.join(bad[:4] + tmp[:2])}",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="*", default=["crawl", "filter", "dedup", "mix", "pretrain"])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where to work (default: a temporary folder, removed after)")
    args = parser.parse_args()
    order = ["crawl", "filter", "dedup", "mix", "pretrain"]
    unknown = sorted(set(args.stages) - set(order))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(order)}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="curate-kill-"))
    rng = random.Random(args.seed)
    summary = []
    try:
        for stage in order[: max(order.index(s) for s in args.stages) + 1]:
            if stage in args.stages:
                summary.append((stage, trial_stage(stage, work, args.trials, rng)))
            else:
                run(commands(work, work / stage)[stage])  # an input of a later stage
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for stage, differ in summary:
        print(f"{stage:9s} {args.trials - differ}/{args.trials} reruns identical to the undisturbed run")
    return 1 if any(d for _, d in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
