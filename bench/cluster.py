"""A two-node Ray cluster on this machine, the pipeline through the CLI, and a worker killed mid-stage.

    python bench/cluster.py [--no-kill] [--keep DIR]

Starts a Ray head (``ray start --head --num-cpus 1``) and a second node (``ray start --address
... --num-cpus 1 --resources '{"node2": 1}'``) as separate processes sharing one temporary
directory, then runs ``crawl → filter → dedup → mix`` on samples/warc through the CLI with
``--engine ray --ray-address 127.0.0.1:PORT`` twice: undisturbed, then with the first Ray worker
seen executing a task in each stage killed with SIGKILL while the stage runs. It prints each
kill and each stage's time, and checks that every stage's Parquet files (kept and removed /
rejected, by sha256) and manifest counts are the same in both runs: Ray retries a task whose
worker died (``max_retries`` in curate/runtime/executor.py) and a task's shards only appear by
an atomic rename, so a killed attempt leaves nothing behind.

The cluster's processes are stopped by process id (those whose command line names the
cluster's temporary directory, and their children), never by name, so other Ray instances on
the machine are left alone. tests/runtime/test_cluster.py runs the same harness.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_WARC = ROOT / "samples" / "warc"
STAGES = ("crawl", "filter", "dedup", "mix")
# Manifest keys that differ between two runs of the same data (timings, memory, input mtimes).
VOLATILE = {"seconds", "memory", "workers", "tool_version", "mtime_ns"}


class ClusterUnavailable(RuntimeError):
    """``ray start`` could not start a node here."""


def _ray_binary() -> str:
    local = Path(sys.executable).with_name("ray")
    return str(local) if local.exists() else (shutil.which("ray") or "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _processes() -> dict[int, int]:
    """pid → parent pid of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        table[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def _environment() -> dict[str, str]:
    """The environment of the nodes and the CLI: this checkout first on the path (workers
    import it), Ray's token authentication off (a local test cluster)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["RAY_AUTH_MODE"] = "disabled"
    return env


class LocalCluster:
    """A Ray head and a second node on this machine, one CPU each, in a temporary directory."""

    def __init__(self) -> None:
        # Short: Ray's socket paths under it must fit in 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="curate-ray-", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = _environment()

    def _ray(self, *args: str) -> None:
        cmd = [_ray_binary(), *args, "--disable-usage-stats"]
        try:
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterUnavailable(f"{' '.join(cmd)}: {exc}") from None
        if r.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} exited {r.returncode}: {(r.stderr or r.stdout)[-2000:]}")

    def start(self) -> LocalCluster:
        common = ["--num-cpus", "1", "--include-dashboard", "false"]
        self._ray("start", "--head", "--port", str(self.port), "--temp-dir", self.temp_dir, *common)
        self._ray("start", "--address", self.address, "--num-cpus", "1", "--resources", '{"node2": 1}')
        return self

    def own_processes(self) -> list[int]:
        """This cluster's processes: those naming its directory, and their descendants."""
        table = _processes()
        own = {pid for pid in table if self.temp_dir in _cmdline(pid)}
        grew = True
        while grew:
            children = {pid for pid, parent in table.items() if parent in own} - own
            own |= children
            grew = bool(children)
        own.discard(os.getpid())
        return sorted(own)

    def raylets(self) -> list[int]:
        return [pid for pid in self.own_processes() if "/raylet/raylet " in _cmdline(pid) + " "]

    def busy_workers(self) -> list[tuple[int, str]]:
        """Worker processes executing a task now (``ray::<task>``, not idle, not an agent)."""
        raylets = set(self.raylets())
        busy = []
        for pid, parent in _processes().items():
            if parent not in raylets:
                continue
            title = _cmdline(pid)
            if title.startswith("ray::") and not title.startswith("ray::IDLE") and "Agent" not in title:
                busy.append((pid, title))
        return busy

    def stop(self) -> None:
        """Stop every process of this cluster by id (TERM, then KILL), remove its directory."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self.own_processes()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
                time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Killer:
    """While a stage's CLI process runs, SIGKILL the first worker seen executing a task."""

    def __init__(self, cluster: LocalCluster, stage: str, proc: subprocess.Popen) -> None:
        self.cluster, self.stage, self.proc = cluster, stage, proc
        self.kill: dict | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            for pid, title in self.cluster.busy_workers():
                if self.proc.poll() is not None:
                    return
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                # Confirmed mid-stage: the worker ran a task and the stage's command had not exited.
                self.kill = {"stage": self.stage, "pid": pid, "task": title, "stage_running": self.proc.poll() is None}
                return
            time.sleep(0.02)

    def join(self) -> dict | None:
        self._thread.join(timeout=10)
        return self.kill


def stage_commands(work: Path, address: str) -> dict[str, list[str]]:
    """The CLI arguments of each stage, absolute paths throughout (workers do not share our cwd)."""
    ray = ["--engine", "ray", "--ray-address", address, "-q"]
    return {
        # No per-page time limit: a slow page on a loaded machine must not differ between runs.
        "crawl": ["crawl", str(SAMPLES_WARC), "-o", str(work / "crawl"), "--set", "extract.time_limit=0", *ray],
        "filter": ["filter", str(work / "crawl"), "-o", str(work / "filter"), *ray],
        "dedup": ["dedup", str(work / "filter"), "-o", str(work / "dedup"), *ray],
        "mix": [
            "mix",
            "-s",
            f"web={work / 'dedup'}:1",
            "--tokens",
            "200k",
            "--shard-size",
            "64k",
            "--seed",
            "7",
            "-o",
            str(work / "mix"),
            *ray,
        ],
    }


def run_pipeline(cluster: LocalCluster, work: Path, *, kill: bool, timeout: float = 300) -> dict:
    """Run the four stages; with ``kill``, one worker killed mid-stage in each where one is
    caught. Returns {"seconds": {stage: s}, "kills": [...]}; raises on a failed stage."""
    seconds, kills = {}, []
    for stage, args in stage_commands(work, cluster.address).items():
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "curate", *args],
            cwd=ROOT,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        killer = Killer(cluster, stage, proc) if kill else None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"{stage} did not finish in {timeout:.0f} s:\n{out[-3000:]}") from None
        seconds[stage] = time.monotonic() - t0
        if killer is not None and (k := killer.join()):
            kills.append(k)
        if proc.returncode != 0:
            raise RuntimeError(f"{stage} exited {proc.returncode}:\n{out[-3000:]}")
    return {"seconds": seconds, "kills": kills}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str) and os.sep in value:
        return "PATH"  # input / output directories differ between the two runs
    return value


def stage_outputs(directory: Path) -> dict:
    """A stage's result: every Parquet file (kept and removed / rejected) by sha256, and its
    manifest without timings and paths."""
    files = {}
    for path in sorted(glob.glob(str(directory / "**" / "*.parquet"), recursive=True)):
        rel = os.path.relpath(path, directory)
        if not rel.startswith(".curate"):
            files[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    manifest = json.loads((directory / "manifest.json").read_text())
    return {"files": files, "manifest": _strip(manifest)}


def leftovers(directory: Path) -> list[str]:
    """Files a killed attempt could have left: anything not a finished shard or our state."""
    odd = []
    for path in glob.glob(str(directory / "**" / "*"), recursive=True):
        rel = os.path.relpath(path, directory)
        if os.path.isfile(path) and not rel.startswith(".curate") and not rel.endswith((".parquet", ".json", ".bin")):
            odd.append(rel)
    return sorted(odd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-kill", action="store_true", help="Run the second pass undisturbed too.")
    parser.add_argument("--keep", type=Path, help="Write the runs here instead of a temporary directory.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="curate-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        with LocalCluster() as cluster:
            print(f"cluster: head {cluster.address} (1 CPU) + node2 (1 CPU), started in {time.monotonic() - t0:.1f} s")
            for name, kill in (("undisturbed", False), ("killed", not args.no_kill)):
                run = run_pipeline(cluster, work / name, kill=kill)
                print(f"{name:12s} " + "  ".join(f"{s} {t:.1f}s" for s, t in run["seconds"].items()))
                for k in run["kills"]:
                    print(
                        f"  SIGKILL pid {k['pid']} ({k['task']}) during {k['stage']}, mid-stage: {k['stage_running']}"
                    )
        same = True
        for stage in STAGES:
            a, b = stage_outputs(work / "undisturbed" / stage), stage_outputs(work / "killed" / stage)
            ok = a == b and not leftovers(work / "killed" / stage)
            same &= ok
            print(f"{stage:8s} {len(a['files'])} parquet file(s): {'identical' if ok else 'DIFFERENT'}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
