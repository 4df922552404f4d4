"""The byte layer under :mod:`curate.stages.crawl.warc`: a forward-only, decompressed view of an archive
stream that survives damaged gzip.

:class:`ByteSource` detects gzip from the first bytes and undoes it member by member with
``zlib``, streamed in 64 KiB pieces (never ``gzip.decompress`` of a whole file, which is
quadratic on multi-member files). It remembers where each member started in the raw input
(that is the record offset Common Crawl indexes use) and, instead of raising, records a
:class:`Break` at the decompressed position where data was lost: a truncated or corrupt member,
junk between members, trailing garbage. It offers the lookahead, bounded pushback and
line/skip/scan primitives the record parser in :mod:`curate.stages.crawl.warc` needs, holding only about one
chunk beyond the current record.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b\x08"
CHUNK = 1 << 16
# Raw bytes of the current gzip member kept so that, when the member turns out to be corrupt,
# the next member can be searched from just after its start (a member truncated in the middle
# of a file is followed by a good one that the decompressor has already swallowed).
MEMBER_HISTORY_CAP = 8 << 20
MAX_HEADER_BYTES = 256 * 1024
PADDING = b"\r\n\t \x00"


@dataclass
class Break:
    """Where the decompressed stream lost data (read by the record layer as a RecordError)."""

    pos: int  # decompressed position where data is missing or junk begins
    reason: str
    raw_offset: int
    detail: str = ""


class ByteSource:
    """A forward-only decompressed view of a raw stream, with lookahead and bounded pushback.

    Gzip is detected from the first bytes; each member is decompressed on its own, so
    damage costs only the member it is in. Data loss is recorded as a :class:`Break` at the
    decompressed position where it happened.
    """

    def __init__(self, raw: BinaryIO, chunk_size: int = CHUNK):
        self.raw = raw
        self.chunk_size = chunk_size
        self.raw_eof = False
        self.pending = bytearray()  # raw bytes read but not yet decompressed
        self.pending_offset = 0  # raw offset of pending[0]
        self.gzip: bool | None = None
        self._d = None  # current zlib decompressor, None between members
        self._member_start = 0
        self._member_raw = bytearray()
        self._member_history_ok = True
        self.members: list[tuple[int, int]] = []  # (decompressed pos, raw offset) of member starts
        self.breaks: list[Break] = []
        self.buf = bytearray()
        self.buf_start = 0  # decompressed position of buf[0]
        self.i = 0  # read index into buf
        self.eof = False

    # ---- raw layer -------------------------------------------------------------------------
    def _read_raw(self) -> bool:
        if self.raw_eof:
            return False
        data = self.raw.read(self.chunk_size)
        if not data:
            self.raw_eof = True
            return False
        self.pending += data
        return True

    def _drop_pending(self, n: int) -> None:
        del self.pending[:n]
        self.pending_offset += n

    @property
    def pos(self) -> int:
        return self.buf_start + self.i

    def _emit(self, data: bytes) -> None:
        self.buf += data

    def _break(self, reason: str, raw_offset: int, detail: str = "") -> None:
        pos = self.buf_start + len(self.buf)
        if self.breaks and self.breaks[-1].pos == pos and self.breaks[-1].reason == reason:
            return  # one lost stretch, one break
        self.breaks.append(Break(pos, reason, raw_offset, detail))

    def _fill_once(self) -> bool:
        """Decompress some more data into ``buf``; False at end of input."""
        if self.gzip is None:
            while len(self.pending) < 3 and self._read_raw():
                pass
            if not self.pending:
                return False
            self.gzip = bytes(self.pending[:3]) == GZIP_MAGIC
        if not self.gzip:
            if not self.pending and not self._read_raw():
                return False
            self._emit(bytes(self.pending))
            self._drop_pending(len(self.pending))
            return True
        if self._d is None:
            return self._start_member()
        if not self.pending and not self._read_raw():
            # The stream ended inside a member.
            self._break("truncated_gzip", self._member_start, "gzip member cut short at end of input")
            self._d = None
            return False
        feed = bytes(self.pending[: self.chunk_size])
        try:
            out = self._d.decompress(feed, 4 * self.chunk_size)
        except zlib.error as exc:
            self._recover_member(f"corrupt gzip member: {exc}")
            return True
        if self._d.eof:
            used = len(feed) - len(self._d.unused_data)
        else:
            used = len(feed) - len(self._d.unconsumed_tail)
        if self._member_history_ok:
            if len(self._member_raw) + used <= MEMBER_HISTORY_CAP:
                self._member_raw += feed[:used]
            else:
                self._member_history_ok = False
                self._member_raw = bytearray()
        self._drop_pending(used)
        if out:
            self._emit(out)
        if self._d.eof:
            self._d = None
        return True

    def _start_member(self) -> bool:
        while len(self.pending) < 3 and self._read_raw():
            pass
        if not self.pending:
            return False
        if bytes(self.pending[:3]) == GZIP_MAGIC:
            self._d = zlib.decompressobj(31)
            self._member_start = self.pending_offset
            self._member_raw = bytearray()
            self._member_history_ok = True
            self.members.append((self.buf_start + len(self.buf), self._member_start))
            return True
        # Not at a member start: padding is fine, anything else is junk up to the next member.
        start = self.pending_offset
        junk = False
        while True:
            idx = self.pending.find(GZIP_MAGIC)
            cut = idx if idx >= 0 else max(0, len(self.pending) - 2)
            if bytes(self.pending[:cut]).strip(PADDING):
                junk = True
            self._drop_pending(cut)
            if idx >= 0:
                break
            if not self._read_raw():
                if bytes(self.pending).strip(PADDING):
                    junk = True
                self._drop_pending(len(self.pending))
                break
        if junk:
            reason = "trailing_garbage" if not self.pending else "garbage_between_members"
            self._break(reason, start, "bytes that are not a gzip member")
        return bool(self.pending)

    def _recover_member(self, detail: str) -> None:
        """The current member is corrupt: mark a break and look for the next member from just
        after this member's start."""
        self._break("corrupt_gzip", self._member_start, detail)
        self._d = None
        if self._member_history_ok and self._member_raw:
            self.pending[:0] = self._member_raw[1:]
            self.pending_offset = self._member_start + 1
        else:
            self._drop_pending(1)
        self._member_raw = bytearray()
        # Skip to the next gzip magic (junk in between belongs to the same break).
        while True:
            idx = self.pending.find(GZIP_MAGIC)
            if idx >= 0:
                self._drop_pending(idx)
                return
            keep = 2
            self._drop_pending(max(0, len(self.pending) - keep))
            if not self._read_raw():
                self._drop_pending(len(self.pending))
                return

    # ---- decompressed layer ----------------------------------------------------------------
    def ensure(self, n: int) -> int:
        """Make at least ``n`` bytes available after the read index (fewer at the end)."""
        while len(self.buf) - self.i < n:
            if not self._fill_once() and len(self.buf) - self.i < n:
                self.eof = True
                break
        return len(self.buf) - self.i

    def peek(self, n: int) -> bytes:
        self.ensure(n)
        return bytes(self.buf[self.i : self.i + n])

    def read(self, n: int) -> bytes:
        self.ensure(n)
        data = bytes(self.buf[self.i : self.i + n])
        self.i += len(data)
        return data

    def readline(self, limit: int = MAX_HEADER_BYTES) -> bytes:
        """One line including its LF (at most ``limit`` bytes; shorter at the end)."""
        search_from = self.i
        while True:
            idx = self.buf.find(b"\n", search_from, self.i + limit)
            if idx >= 0:
                line = bytes(self.buf[self.i : idx + 1])
                self.i = idx + 1
                return line
            search_from = len(self.buf)
            if len(self.buf) - self.i >= limit or not self._fill_once():
                line = bytes(self.buf[self.i : self.i + limit])
                self.i += len(line)
                return line

    def skip(self, n: int) -> int:
        """Discard ``n`` bytes without holding them; returns how many were skipped."""
        skipped = 0
        while skipped < n:
            if self.i >= len(self.buf):
                self.compact()
                if not self._fill_once() and self.i >= len(self.buf):
                    self.eof = True
                    break
            take = min(n - skipped, len(self.buf) - self.i)
            self.i += take
            skipped += take
        return skipped

    def skip_padding(self) -> None:
        while True:
            if self.i >= len(self.buf) and not self.ensure(1):
                return
            b = self.buf[self.i]
            if b in PADDING:
                self.i += 1
            else:
                return

    def seek_back(self, pos: int) -> None:
        """Move the read position back to ``pos`` (not before the last :meth:`compact`)."""
        if pos < self.buf_start:
            raise ValueError("cannot seek back past the compaction point")
        self.i = pos - self.buf_start

    def compact(self) -> None:
        if self.i:
            del self.buf[: self.i]
            self.buf_start += self.i
            self.i = 0

    def scan_to(self, pattern: re.Pattern[bytes]) -> bool:
        """Advance to the next match of ``pattern`` at the start of a line (or right at the
        read position), holding about one chunk of lookahead; False at end of input."""
        while True:
            for m in pattern.finditer(self.buf, self.i):
                at = m.start()
                if at == self.i or self.buf[at - 1] == 0x0A:
                    self.i = at
                    return True
            # Keep a tail long enough for a header line split across chunks.
            keep = 4096
            if len(self.buf) - self.i > keep:
                self.i = len(self.buf) - keep
            self.compact()
            if not self._fill_once():
                for m in pattern.finditer(self.buf, self.i):
                    at = m.start()
                    if at == self.i or self.buf[at - 1] == 0x0A:
                        self.i = at
                        return True
                self.i = len(self.buf)
                self.eof = True
                return False

    def raw_offset_at(self, pos: int) -> int:
        """Offset in the raw input of the record that starts at decompressed ``pos``: the start
        of the gzip member holding it, or ``pos`` itself for an uncompressed input."""
        if not self.gzip:
            return pos
        offset = 0
        # Members are appended in order; the last one starting at or before pos holds it.
        lo, hi = 0, len(self.members) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.members[mid][0] <= pos:
                offset = self.members[mid][1]
                lo = mid + 1
            else:
                hi = mid - 1
        return offset

    def take_breaks(self, upto: int) -> list[Break]:
        """Breaks at decompressed positions < ``upto`` (removed from the pending list)."""
        taken = [b for b in self.breaks if b.pos < upto]
        if taken:
            self.breaks = [b for b in self.breaks if b.pos >= upto]
        return taken

    def prune_members(self) -> None:
        """Forget member starts before the compaction point (keeps memory bounded)."""
        if len(self.members) > 64:
            keep_from = 0
            for idx, (pos, _) in enumerate(self.members):
                if pos <= self.buf_start:
                    keep_from = idx
            if keep_from:
                del self.members[:keep_from]
