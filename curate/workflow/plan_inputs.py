"""What ``curate pipeline FILE --plan`` is asked about: the input size (``--input``: bytes, a
number of WARC files or a Common Crawl snapshot name) and the cluster (``--cluster``:
``NODESxCORESxMEM[+GPUSxTYPE]``), parsed into :class:`InputSize` and :class:`Cluster` for
:mod:`curate.workflow.plan_cost`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from curate.core.errors import ConfigError
from curate.workflow import cc_snapshots

_BYTE_UNITS = {
    "b": 1,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "p": 1e15,
}
_SNAPSHOT = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$", re.IGNORECASE)
_WARC = re.compile(r"^(\d+(?:\.\d+)?)\s*([km]?)\s*warcs?$", re.IGNORECASE)
_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$", re.IGNORECASE)
_CLUSTER = re.compile(
    r"^(\d+)x(\d+)x(\d+(?:\.\d+)?)\s*([a-z]*)(?:\+(\d+)x([a-z0-9][a-z0-9-]*))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class InputSize:
    label: str
    bytes: float  # compressed WARC bytes
    warc_files: float
    pages: float
    basis: str  # how the figures were derived


@dataclass(frozen=True)
class Cluster:
    nodes: int
    cores: int  # per node
    memory: float  # bytes per node
    gpus: int = 0  # in all
    gpu_type: str | None = None

    @property
    def total_cores(self) -> int:
        return self.nodes * self.cores


def parse_input(spec: str) -> InputSize:
    """``10TB`` / ``500GiB`` (compressed WARC bytes), ``1000warc`` (WARC files) or
    ``CC-MAIN-2024-10`` (a Common Crawl snapshot: its published page count, see
    :mod:`curate.workflow.cc_snapshots`)."""
    s = str(spec).strip()
    per_page, per_file = cc_snapshots.BYTES_PER_PAGE, cc_snapshots.WARC_FILE_BYTES
    basis = f"{per_page / 1e3:.1f} kB per page, {per_file / 1e9:.2f} GB per WARC file (CC-MAIN-2019-09, published)"
    if _SNAPSHOT.match(s):
        snap = cc_snapshots.snapshot(s)
        return InputSize(snap["name"], snap["bytes"], snap["warc_files"], snap["pages"], snap["basis"])
    m = _WARC.match(s)
    if m:
        files = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
        if files > 0:
            return InputSize(s, files * per_file, files, files * per_file / per_page, basis)
    m = _BYTES.match(s.replace(" ", ""))
    if m and m.group(2).lower() in _BYTE_UNITS:
        size = float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()]
        if size > 0:
            return InputSize(s, size, size / per_file, size / per_page, basis)
    raise ConfigError(
        f"--input {spec!r}: expected compressed WARC bytes (10TB, 500GB), a number of WARC files (1000warc) "
        "or a Common Crawl snapshot (CC-MAIN-2024-10)"
    )


def parse_cluster(spec: str) -> Cluster:
    """``16x32x128GB`` (nodes × cores per node × memory per node), optionally ``+8xH100``
    (GPUs in all and their type, one of ``curate train estimate --gpu``)."""
    m = _CLUSTER.match(str(spec).strip().replace(" ", ""))
    unit = (m.group(4) or "gb").lower() if m else ""
    if not m or unit not in _BYTE_UNITS or int(m.group(1)) < 1 or int(m.group(2)) < 1 or float(m.group(3)) <= 0:
        raise ConfigError(
            f"--cluster {spec!r}: expected NODESxCORESxMEM[+GPUSxTYPE], e.g. 16x32x128GB or 2x64x512GB+8xH100"
        )
    gpus, gpu_type = 0, None
    if m.group(5):
        from train.metrics import GPU_PEAK_FLOPS

        gpus, gpu_type = int(m.group(5)), m.group(6).lower()
        if gpus < 1 or gpu_type not in GPU_PEAK_FLOPS:
            raise ConfigError(
                f"--cluster {spec!r}: unknown GPU {m.group(6)!r} or count; known: {', '.join(sorted(GPU_PEAK_FLOPS))}"
            )
    return Cluster(int(m.group(1)), int(m.group(2)), float(m.group(3)) * _BYTE_UNITS[unit], gpus, gpu_type)
