"""Progress reporting: a redrawn status line on a terminal, sparse plain lines elsewhere.

On a TTY the line shows inputs done, records/s, documents/s and an ETA; when stderr is not a
terminal (CI logs, files) a plain line is printed at most every ``log_every`` seconds, so long
jobs still show life in a log without flooding it. ``CURATE_PROGRESS=0`` silences it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import TextIO


def _fmt_rate(n: float) -> str:
    return f"{n:,.0f}" if n >= 10 else f"{n:.1f}"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Thread-safe counters with periodic rendering.

    ``total`` is the amount of work in ``unit`` (inputs, bytes, steps) that :meth:`advance`
    counts; :meth:`add` bumps named counters (records, docs) shown with their rates.
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        unit: str = "files",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        log_every: float = 30.0,
        redraw_every: float = 0.25,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = os.environ.get("CURATE_PROGRESS", "1") != "0"
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = redraw_every if self.tty else log_every
        self.done = 0.0
        self.counters: Counter[str] = Counter()
        self.start = time.monotonic()
        self._last = self.start
        self._lock = threading.Lock()
        self._drawn = False

    def advance(self, n: float = 1) -> None:
        with self._lock:
            self.done += n
        self._maybe_render()

    def add(self, **counts: int) -> None:
        with self._lock:
            self.counters.update(counts)
        self._maybe_render()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        parts = [self.label]
        if self.total:
            unit = "MB" if self.unit == "bytes" else self.unit
            scale = 1e6 if self.unit == "bytes" else 1
            parts.append(f"{self.done / scale:,.0f}/{self.total / scale:,.0f} {unit}")
        else:
            parts.append(f"{self.done:,.0f} {self.unit}")
        for name, value in self.counters.items():
            parts.append(f"{value:,} {name} ({_fmt_rate(value / elapsed)}/s)")
        eta = None
        if self.total and self.done:
            eta = elapsed * (self.total - self.done) / self.done
        parts.append(f"ETA {_fmt_eta(eta)}" if self.total else f"{_fmt_eta(elapsed)} elapsed")
        return "  ".join(parts)

    def _maybe_render(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self._maybe_render(force=True)
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
