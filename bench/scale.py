"""Linear cost, measured: filter, dedup and mix at growing document counts.

    python bench/scale.py [--sizes 10k,100k] [--1m] [--10m] [--workers 2] [--dup-rate 0.1]
                          [--workdir DIR] [--extra DIR ...]

For each size the corpus comes from ``tools/make_scale_docs.py`` (paragraphs resampled from the
real texts in ``samples/``, planted duplicates at ``--dup-rate``). Each stage then runs on that
corpus through the CLI in a fresh child process: ``curate filter`` (the default chain), ``curate
dedup`` (defaults) and ``curate mix`` (one source, a budget of half its UTF-8 bytes, so it
samples and shuffles). The child reports the RSS high-water of its own process (the driver) and
of its largest reaped child (a worker), from ``getrusage``.

Printed per stage and size: seconds, microseconds per document, documents/s, peak RSS of the
driver and of a worker, and what the driver's resident memory was at its peak (sampled from
/proc/self/smaps: its own heap and anonymous memory, Ray's object store mapped in, mapped files); then per stage the growth exponent ``b`` of ``time ~ n^b`` (least squares
on log time vs log n; 1.0 is linear) and, where it is not within 0.1 of 1, a reason measured
from the same figures: the fixed cost ``a`` of a straight-line fit ``t = a + c n`` (process
start, model and index loading), and for dedup the candidate pairs per document.
``--10m`` is skipped when the disk lacks room for the corpus and the outputs (~5x its bytes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

STAGES = ("filter", "dedup", "mix")


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def _smaps() -> dict[str, int]:
    """This process's resident bytes by kind, from /proc/self/smaps (Linux): its own heap and
    anonymous memory, Ray's object store (shared memory mapped in), and mapped files (libraries,
    memory-mapped work columns)."""
    out = {"own": 0, "object_store": 0, "files": 0}
    kind = "own"
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    if name.startswith("/dev/shm") or "plasma" in name:
                        kind = "object_store"
                    elif name.startswith("/"):
                        kind = "files"
                    else:
                        kind = "own"  # [heap], [stack], anonymous
                elif line.startswith("Rss:"):
                    out[kind] += int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def _watch_smaps(peak: dict) -> None:
    """Keep in ``peak`` the breakdown of the largest resident total seen (every 0.3 s)."""
    while True:
        now = _smaps()
        if sum(now.values()) > sum(peak.values()):
            peak.update(now)
        time.sleep(0.3)


def _child(argv: list[str]) -> None:
    """Run one ``curate`` command in this process and print its RSS high-waters as JSON."""
    import threading

    from curate.cli import cli

    breakdown: dict[str, int] = {"own": 0, "object_store": 0, "files": 0}
    threading.Thread(target=_watch_smaps, args=(breakdown,), daemon=True).start()
    start = time.perf_counter()
    try:
        cli.main(argv, prog_name="curate", standalone_mode=False)
    finally:
        seconds = time.perf_counter() - start
        kb = 1024 if sys.platform != "darwin" else 1
        print(
            "SCALE "
            + json.dumps(
                {
                    "seconds": seconds,
                    "driver_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb,
                    "driver_at_peak": dict(breakdown),
                    "worker_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kb,
                    "cpu": sum(
                        r.ru_utime + r.ru_stime
                        for r in (
                            resource.getrusage(resource.RUSAGE_SELF),
                            resource.getrusage(resource.RUSAGE_CHILDREN),
                        )
                    ),
                }
            ),
            flush=True,
        )


def run_stage(argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CURATE_PROGRESS="0")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SCALE ")]
    if proc.returncode or not lines:
        raise SystemExit(f"curate {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def fit_exponent(ns: list[int], ts: list[float]) -> float:
    xs, ys = [math.log(n) for n in ns], [math.log(max(t, 1e-9)) for t in ts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else float("nan")


def fit_line(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """``(a, c)`` of the least-squares line ``t = a + c n``."""
    mx, my = sum(ns) / len(ns), sum(ts) / len(ts)
    sxx = sum((n - mx) ** 2 for n in ns)
    c = sum((n - mx) * (t - my) for n, t in zip(ns, ts, strict=True)) / sxx if sxx else 0.0
    return my - c * mx, c


def _mb(b: int) -> str:
    return f"{b / 2**20:,.0f} MB"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k", help="document counts, comma-separated")
    ap.add_argument("--1m", dest="one_m", action="store_true", help="add 1M documents")
    ap.add_argument("--10m", dest="ten_m", action="store_true", help="add 10M documents where the disk allows")
    ap.add_argument("--workers", "-j", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs-per-shard", type=int, default=2_000)
    ap.add_argument("--workdir", default=None, help="where corpora and outputs go (default: a temporary folder)")
    ap.add_argument("--extra", action="append", default=[], help="more Parquet shards to sample paragraphs from")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--stages", default=",".join(STAGES), help="which stages to run, comma-separated (default: all three)"
    )
    ap.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="run each stage on local worker processes or as Ray tasks (a local Ray instance; the driver's "
        "RSS is then the figure that matters: Ray's workers are not its children)",
    )
    ap.add_argument("--json", default=None, help="also write every measured row to this JSON file")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    sizes += [1_000_000] if args.one_m else []
    sizes += [10_000_000] if args.ten_m else []
    sizes = sorted(set(sizes))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage {', '.join(unknown)}; choose from {', '.join(STAGES)}")

    import make_scale_docs

    root = Path(args.workdir or tempfile.mkdtemp(prefix="curate-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"bench/scale.py {datetime.date.today().isoformat()}: {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, engine {args.engine}, workers {args.workers}, dup rate {args.dup_rate}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'stage':<7} {'docs':>10} {'seconds':>9} {'us/doc':>9} {'docs/s':>9} {'CPU us/doc':>10} "
        f"{'driver RSS':>11} {'worker RSS':>11}"
    )
    results: dict[str, list[tuple[int, dict]]] = {s: [] for s in STAGES}
    bytes_per_doc = 510.0  # Parquet bytes per generated document (measured: 508), until one is written
    try:
        for n in sizes:
            if n >= 10_000_000:
                need = 5 * bytes_per_doc * n
                free = shutil.disk_usage(root).free
                if free < need:
                    print(f"skipping {n:,}: needs ~{need / 1e9:.0f} GB free, {free / 1e9:.0f} GB available")
                    continue
            corpus = root / f"docs-{n}"
            t0 = time.perf_counter()
            # The same shard size at every size: a worker's memory then measures the stage, not
            # the shard; more documents means more shards.
            per_shard = args.docs_per_shard
            info = make_scale_docs.write(
                corpus, n, seed=args.seed, dup_rate=args.dup_rate, docs_per_shard=per_shard, extra=args.extra
            )
            bytes_per_doc = info["bytes"] / n
            print(
                f"  corpus {n:,}: {info['chars'] / n:,.0f} chars/doc, {info['bytes'] / 1e6:,.1f} MB Parquet, "
                f"planted {info['planted']['exact']:,} exact + {info['planted']['near']:,} near, "
                f"generated in {time.perf_counter() - t0:.1f} s"
            )
            # With --engine ray, --workers is the CPUs of the local Ray instance the command starts.
            j = ["-j", str(args.workers)] + (["--engine", "ray"] if args.engine == "ray" else [])
            commands = {
                "filter": ["filter", str(corpus), "-o", str(root / f"filter-{n}"), "-q", *j],
                "dedup": ["dedup", str(corpus), "-o", str(root / f"dedup-{n}"), *j],
                "mix": [
                    "mix",
                    "-s",
                    f"web={corpus}:1.0",
                    "--tokens",
                    str(info["chars"] // 2),
                    "-o",
                    str(root / f"mix-{n}"),
                    *j,
                ],
            }
            for stage in stages:
                r = run_stage(commands[stage])
                if stage == "dedup":
                    m = json.loads((root / f"dedup-{n}" / "manifest.json").read_text())
                    r["manifest"] = {k: m.get(k) for k in ("near", "removed", "counts") if k in m}
                results[stage].append((n, r))
                print(
                    f"{stage:<7} {n:>10,} {r['seconds']:>9.1f} {1e6 * r['seconds'] / n:>9.1f} "
                    f"{n / r['seconds']:>9,.0f} {1e6 * r['cpu'] / n:>10.1f} {_mb(r['driver_rss']):>11} "
                    f"{_mb(r['worker_rss']):>11}",
                    flush=True,
                )
                at_peak = r.get("driver_at_peak") or {}
                if any(at_peak.values()):
                    print(
                        f"{'':<7} {'':>10} driver at its peak: own {_mb(at_peak['own'])}, Ray object store "
                        f"{_mb(at_peak['object_store'])}, mapped files {_mb(at_peak['files'])}",
                        flush=True,
                    )
                if args.json:
                    rows = {st: [{"docs": k, **v} for k, v in rs] for st, rs in results.items() if rs}
                    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
            for stage in STAGES:
                shutil.rmtree(root / f"{stage}-{n}", ignore_errors=True)
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)

    print("\ngrowth exponent b of time ~ n^b (least squares on log-log; 1.0 is linear)")
    for stage in STAGES:
        rows = results[stage]
        if len(rows) < 2:
            continue
        ns, ts = [n for n, _ in rows], [r["seconds"] for _, r in rows]
        b = fit_exponent(ns, ts)
        a, c = fit_line(ns, ts)
        cpu = fit_exponent(ns, [r["cpu"] for _, r in rows])
        mem = fit_exponent(ns, [r["driver_rss"] for _, r in rows])
        _, per_doc = fit_line(ns, [r["driver_rss"] for _, r in rows])
        line = (
            f"  {stage:<7} b = {b:.2f}   CPU time ~ n^{cpu:.2f}   driver RSS ~ n^{mem:.2f} "
            f"({per_doc:,.0f} bytes/doc)   line: {a:.1f} s + {1e6 * c:.1f} us x n"
        )
        if abs(b - 1) > 0.1:
            if b < 1 and a > 0:
                why = (
                    f"below 1: a fixed cost of ~{a:.1f} s (process start, imports, models and indexes "
                    f"loaded once per worker) is {100 * a / ts[0]:.0f}% of the {ns[0]:,}-document run"
                )
            else:
                why = (
                    f"above 1: time per document grows from {1e6 * ts[0] / ns[0]:.1f} to {1e6 * ts[-1] / ns[-1]:.1f} us"
                )
                if cpu < b - 0.1:
                    why += (
                        f"; CPU time grows only as n^{cpu:.2f}: the rest is waiting (other jobs on the "
                        f"machine; load average {os.getloadavg()[0]:.1f} at the end)"
                    )
            line += f"\n          {why}"
        if mem > 0.15:
            line += (
                f"\n          driver memory grows: ~{per_doc:,.0f} bytes per document "
                f"({per_doc * 1e9 / 1e12:,.1f} TB at 1 billion documents)"
            )
        print(line)


if __name__ == "__main__":
    main()
