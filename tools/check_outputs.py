"""Golden outputs: run the main job and every stage command on the samples, hash what they write.

Used to show that a refactoring changes no behaviour: record a snapshot before it, compare
after it. Every command runs from the repository root with relative paths, inside
``.golden/`` (git-ignored), so the snapshot does not depend on where the checkout lives::

    python tools/check_outputs.py record golden.json     # before the change
    python tools/check_outputs.py compare golden.json    # after it: exit 1 on any difference

What is hashed:

- Parquet shards, tokenizers, fastText models and other data files: their bytes.
- JSON files (manifests, state, checkpoint metadata) and JSONL metrics: their content with
  the values that measure time removed (``seconds``, ``tokens_per_s``, input files'
  ``mtime_ns`` ...), since a manifest records how long a run took and when its inputs were
  written.
- ``model.safetensors`` and ``optimizer.pt``: every tensor's name, dtype, shape and bytes
  (the file header's metadata order is not fixed; the tensors are what matters).
- Each command's stdout and stderr, with durations and rates masked: messages must not change.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ".golden"

# Keys whose values measure time or speed, not behaviour.
VOLATILE_KEYS = {
    "seconds",
    "elapsed",
    "elapsed_s",
    "time",
    "wall_time",
    "started",
    "finished",
    "created",
    "created_at",
    "updated_at",
    "written_at",
    "timestamp",
    "tokens_per_sec",
    "tok_per_s",
    "tokens_per_s",
    "mfu",
    "dt",
    "step_time",
    "docs_per_s",
    "records_per_s",
    "duration",
    "mtime_ns",
    "mtime",
}
NS_CLOCK = 10**18  # an integer this large is a file time in nanoseconds (input fingerprints)
# Stdout/stderr: durations ("1.2s", "31s"), rates ("123 tok/s", "(12/s)"), clock times.
_MASKS = [
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s)\b"), "<t>"),
    (re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:tok|docs|records|items|rows|it|pairs)?/s\b"), "<rate>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}:\d{2},\d+\b"), "<log time>"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"), "<clock>"),
    (re.compile(r"\bmfu [\d.]+%?", re.I), "mfu <m>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2} <clock>,\d+"), "<log time>"),
]


def commands(g: str) -> list[tuple[str, list[str]]]:
    """(name, argv) for every run; ``g`` is the relative work folder."""
    # fmt: off
    pretrain = ["--config", "samples/train/pretrain_tiny.toml", "--set", "max_steps=40", "--set", "eval_every=20",
                "--set", "checkpoint_every=20", "--set", "threads=1"]
    return [
        ("pipeline", ["pipeline", "samples/pipeline.toml", "--workdir", f"{g}/pipeline", "--workers", "2"]),
        ("crawl", ["crawl", "samples/warc", "-o", f"{g}/crawl", "-j", "2", "-q"]),
        ("filter", ["filter", f"{g}/crawl", "-o", f"{g}/filter", "--config", "samples/filters.toml", "-j", "2",
            "-q"]),
        ("filter-default", ["filter", f"{g}/crawl", "-o", f"{g}/filter-default", "-j", "1", "-q"]),
        ("annotate", ["filter", f"{g}/crawl", "-o", f"{g}/annotated", "--config", "samples/filters.toml",
            "--annotate", "-q"]),
        ("dedup", ["dedup", f"{g}/filter", "-o", f"{g}/dedup", "-j", "2", "-q"]),
        ("dedup-exact", ["dedup", f"{g}/filter", "-o", f"{g}/dedup-exact", "--verify", "exact", "--url", "-j", "2",
            "-q"]),
        ("filter-ray", ["filter", f"{g}/crawl", "-o", f"{g}/filter-ray", "--config", "samples/filters.toml",
            "--engine", "ray", "-j", "2", "-q"]),
        ("dedup-ray", ["dedup", f"{g}/filter", "-o", f"{g}/dedup-ray", "--verify", "exact", "--engine", "ray",
            "-j", "2", "-q"]),
        ("dedup-plan", ["dedup", f"{g}/filter", "-o", f"{g}/dedup-plan", "--plan"]),
        ("tokenizer", ["tokenizer", "train", f"{g}/dedup", "samples/books", "samples/papers", "-o",
            f"{g}/tokenizer", "--vocab-size", "4096", "-q"]),
        ("mix", ["mix", "--source", f"web={g}/dedup:0.55", "--source", "books=samples/books:0.2", "--source",
            "papers=samples/papers:0.15", "--source", "code=samples/code:0.1", "--tokenizer", f"{g}/tokenizer",
            "--tokens", "300k", "-o", f"{g}/mix", "-q"]),
        ("mix-pretok", ["mix", "--config", "samples/mix.toml", "--source", f"web={g}/dedup:0.6", "--source",
            "code=samples/code:0.4", "--tokens", "50k", "--pretokenize", "--tokenizer", f"{g}/tokenizer", "-o",
            f"{g}/mix-pretok", "-q"]),
        ("mix-plan", ["mix", "--source", f"web={g}/dedup:0.7", "--source", "books=samples/books:0.3", "--tokens",
            "1M", "--tokenizer", f"{g}/tokenizer", "--plan", "--json"]),
        ("mix-missing", ["mix", "--config", "samples/mix.toml", "--tokenizer", f"{g}/tokenizer", "--plan"]),
        ("quality", ["quality", "train", "-p", "samples/books", "-p", "samples/papers", "-n", f"{g}/crawl", "-o",
            f"{g}/quality.bin", "--txt-unit", "paragraph"]),
        ("inspect", ["inspect", f"{g}/mix"]),
        ("inspect-json", ["inspect", f"{g}/filter", "--json"]),
        ("sql", ["sql", f"{g}/mix",
            "select source, count(*) docs, sum(n_tokens) tokens, max(epoch) max_epoch from docs group by 1 order by tokens desc"]),
        ("sql-removed", ["sql", f"{g}/dedup", "select dup_kind, count(*) n from removed group by 1 order by 1",
            "--format", "csv"]),
        ("report", ["report", f"{g}/mix", "-o", f"{g}/report.html"]),
        ("pretrain", ["train", "pretrain", "--data", f"{g}/mix", "-o", f"{g}/ckpt/base", *pretrain]),
        ("pretrain-bytes", ["train", "pretrain", "--data", f"{g}/mix-pretok", "-o", f"{g}/ckpt/pretok", *pretrain,
            "--set", "max_steps=10"]),
        ("generate", ["generate", f"{g}/ckpt/base", "The history of", "--seed", "1", "--max-new-tokens", "20"]),
        ("estimate", ["train", "estimate", "--params", "7e9", "--tokens", "2e12", "--gpu", "h100", "--mfu", "0.4",
            "--price", "2.5"]),
        ("sft", ["train", "sft", "--base", f"{g}/ckpt/base", "--data", "samples/sft/qa.jsonl", "-o",
            f"{g}/ckpt/sft", "--steps", "20"]),
        ("generate-chat", ["generate", f"{g}/ckpt/sft", "What is the capital of France?", "--chat", "--seed", "3",
            "--max-new-tokens", "16"]),
        ("sample-pairs", ["train", "sample-pairs", "--model", f"{g}/ckpt/sft", "--prompts",
            "samples/prompts.jsonl", "-o", f"{g}/pairs.parquet", "--max-new-tokens", "12"]),
        ("reward", ["train", "reward", "--base", f"{g}/ckpt/sft", "--data", "samples/comparisons.jsonl", "-o",
            f"{g}/ckpt/rm", "--steps", "15"]),
        ("score", ["train", "score", f"{g}/ckpt/rm", "--data", "samples/comparisons.jsonl"]),
        ("rlhf", ["train", "rlhf", "--policy", f"{g}/ckpt/sft", "--reward", f"{g}/ckpt/rm", "--prompts",
            "samples/prompts.jsonl", "-o", f"{g}/ckpt/rlhf", "--steps", "4", "--max-new-tokens", "12"]),
        ("rloo", ["train", "rlhf", "--policy", f"{g}/ckpt/sft", "--reward", f"{g}/ckpt/rm", "--prompts",
            "samples/prompts.jsonl", "-o", f"{g}/ckpt/rloo", "--algo", "rloo", "--steps", "3", "--max-new-tokens",
            "12"]),
        ("dpo", ["train", "dpo", "--policy", f"{g}/ckpt/sft", "--data", "samples/comparisons.jsonl", "-o",
            f"{g}/ckpt/dpo", "--steps", "10"]),
        ("ipo", ["train", "dpo", "--policy", f"{g}/ckpt/sft", "--data", "samples/comparisons.jsonl", "-o",
            f"{g}/ckpt/ipo", "--steps", "5", "--loss", "ipo"]),
        ("errors", ["crawl", "samples/missing-folder", "-o", f"{g}/none"]),
        ("errors-config", ["filter", f"{g}/crawl", "-o", f"{g}/none", "--config", "samples/mix.toml"]),
        ("errors-set", ["train", "pretrain", "--data", f"{g}/mix", "-o", f"{g}/none", "--set", "model.n_layr=2"]),
    ]
    # fmt: on


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= NS_CLOCK:
        return "<file time>"
    return value


def _mask_values(text: str) -> str:
    """Durations, rates and clock times masked."""
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def _mask(text: str, root: str | None = None) -> str:
    """A command's output with :func:`_mask_values`, the checkout's path as ``<root>`` (a command
    may print an absolute path) and runs of spaces as one (a column widens with a longer time)."""
    return re.sub(r" {2,}", " ", _mask_values(text.replace(root or str(ROOT), "<root>")))


def _tensor_digest(path: Path) -> str:
    import torch

    h = hashlib.sha256()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    else:
        tensors = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, torch.Tensor):
                tensors[prefix] = obj
            elif isinstance(obj, dict):
                for k in sorted(obj, key=str):
                    walk(f"{prefix}.{k}", obj[k])
            elif isinstance(obj, (list, tuple)):
                for i, v in enumerate(obj):
                    walk(f"{prefix}[{i}]", v)
            else:
                tensors[prefix] = torch.tensor(list(json.dumps(obj, sort_keys=True, default=str).encode()))

        walk("", torch.load(str(path), map_location="cpu", weights_only=True))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def digest(path: Path) -> str:
    name = path.name
    if name.endswith((".safetensors", ".pt")):
        return "tensors:" + _tensor_digest(path)
    data = path.read_bytes()
    if name.endswith(".json"):
        try:
            obj = json.loads(data)
        except ValueError:
            return hashlib.sha256(data).hexdigest()
        return "json:" + hashlib.sha256(json.dumps(_strip(obj), sort_keys=True).encode()).hexdigest()
    if name.endswith(".jsonl"):
        lines = [json.dumps(_strip(json.loads(line)), sort_keys=True) for line in data.decode().splitlines() if line]
        return "jsonl:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if name.endswith(".html"):
        return "html:" + hashlib.sha256(_mask_values(data.decode("utf-8", "replace")).encode()).hexdigest()
    return hashlib.sha256(data).hexdigest()


def snapshot(only: set[str] | None = None) -> dict[str, Any]:
    """Run every command from the repository root; return outputs and file digests."""
    os.chdir(ROOT)
    g = f"{WORK}/run"
    shutil.rmtree(g, ignore_errors=True)
    env = {**os.environ, "CURATE_PROGRESS": "0", "PYTHONHASHSEED": "0"}
    curate = [sys.executable, "-m", "curate"]
    runs: dict[str, Any] = {}
    for name, argv in commands(g):
        if only and name not in only:
            continue
        proc = subprocess.run(curate + argv, capture_output=True, text=True, env=env)
        runs[name] = {
            "argv": argv,
            "exit": proc.returncode,
            "stdout": _mask(proc.stdout).splitlines(),
            "stderr": _mask(proc.stderr).splitlines(),
        }
        print(f"{name:16s} exit {proc.returncode}", file=sys.stderr, flush=True)
    files = {}
    for path in sorted(Path(g).rglob("*")):
        if path.is_file() and not path.name.endswith(".tmp") and path.name != "lock":
            files[str(path.relative_to(g))] = digest(path)
    return {"root": str(ROOT), "runs": runs, "files": files}


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    old_root = old.get("root", "/work/main")  # snapshots without the field were recorded there
    for name in sorted(set(old["runs"]) | set(new["runs"])):
        a, b = old["runs"].get(name), new["runs"].get(name)
        if a is None or b is None:
            problems.append(f"run {name}: only in {'new' if a is None else 'old'}")
            continue
        for key in ("exit", "stdout", "stderr"):
            if key != "exit":  # masks added since the snapshot was recorded apply to it too
                a[key] = [_mask(line, old_root) for line in a[key]]
                b[key] = [_mask(line) for line in b[key]]
            if a[key] != b[key]:
                diff = (
                    "\n".join(difflib.unified_diff(a[key], b[key], "old", "new", lineterm="", n=1))
                    if isinstance(a[key], list)
                    else f"{a[key]} -> {b[key]}"
                )
                problems.append(f"run {name}: {key} differs\n{diff}")
    for path in sorted(set(old["files"]) | set(new["files"])):
        a, b = old["files"].get(path), new["files"].get(path)
        if a != b:
            problems.append(f"file {path}: " + ("missing now" if b is None else "new" if a is None else "differs"))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "compare"])
    parser.add_argument("snapshot", help="JSON file to write (record) or to compare against (compare)")
    parser.add_argument("--only", nargs="*", help="run only these commands (names as in commands())")
    parser.add_argument("--keep", action="store_true", help=f"keep {WORK}/run afterwards")
    args = parser.parse_args()
    target = Path(args.snapshot).resolve()
    result = snapshot(set(args.only) if args.only else None)
    if not args.keep:
        shutil.rmtree(ROOT / WORK / "run", ignore_errors=True)
    if args.mode == "record":
        target.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(result['runs'])} runs and {len(result['files'])} files in {target}")
        return 0
    old = json.loads(target.read_text())
    if args.only:
        old["runs"] = {k: v for k, v in old["runs"].items() if k in args.only}
        # A partial run cannot tell a missing file from one another command writes.
        old["files"] = {k: v for k, v in old["files"].items() if k in result["files"]}
    problems = compare(old, result)
    for p in problems:
        print(p)
    print(
        f"{'PASSED' if not problems else 'FAILED'}: {len(result['runs'])} runs, {len(result['files'])} files, "
        f"{len(problems)} difference(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
