"""The actor's on-disk spool: every transition is written here (as its wire bytes) before it is sent, and
leaves only when the learner acknowledges it. An actor restart reads the spool back and resends it.

    <spool_dir>/<actor_id>/
        state.json           {"epoch": E, "next_seq": N}: the seq stream and where it continues
        seg_00000001.log     records: magic "LSP1" | u64 seq | u32 length | u32 crc32 of those 16 bytes
                             | payload (little-endian; the payload is checked by the receiver's validation)
        rejected/<seq>.msg   transitions the learner refused for good, kept for a person to look at

A record is appended whole with one write(2), so a killed process leaves at most a torn last record, which
the next start detects by its crc and cuts off (logging it). Without `fsync` a power loss may lose the last
seconds; a process crash loses nothing that reached the spool.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lastr1.files import save_json
from lastr1.transport.errors import SpoolFull

log = logging.getLogger(__name__)
MAGIC = b"LSP1"
HEADER = struct.Struct("<4sQII")
_HEAD16 = struct.Struct("<4sQI")


def _header(seq: int, n: int) -> bytes:
    h = _HEAD16.pack(MAGIC, seq, n)
    return h + struct.pack("<I", zlib.crc32(h))


@dataclass(eq=False)
class _Segment:
    path: Path
    fd: int
    size: int = 0
    live: set[int] = field(default_factory=set)
    max_seq: int = -1


class Spool:
    def __init__(self, root: str | Path, max_bytes: int, segment_bytes: int, fsync: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.segment_bytes, self.fsync = max_bytes, segment_bytes, fsync
        self._lock = threading.Lock()
        self._empty: set[_Segment] = set()  # fully acknowledged, dropped at the next maintain()
        self._index: dict[int, tuple[_Segment, int, int]] = {}  # seq → (segment, payload offset, length)
        self._segments: list[_Segment] = []
        state_file = self.root / "state.json"
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            self.epoch, next_seq = int(state["epoch"]), int(state["next_seq"])
        else:
            # A new seq stream: the learner keys its duplicate detection on (actor_id, epoch), so a wiped spool
            # restarting at seq 0 is never mistaken for data it already has.
            self.epoch, next_seq = time.time_ns(), 0
        for p in sorted(self.root.glob("seg_*.log")):
            self._recover(p)
        self.next_seq = max([next_seq] + [s + 1 for s in self._index])
        self._persisted_next = -1
        self._save_state()
        for seg in [s for s in self._segments if not s.live]:
            self._drop(seg)
        n = max([int(p.stem[4:]) for p in self.root.glob("seg_*.log")], default=0) + 1
        self._active = self._open(self.root / f"seg_{n:08d}.log")
        if self._index:
            log.info("spool %s: %d unacknowledged transitions from a previous run will be resent",
                     self.root, len(self._index))

    def _open(self, path: Path) -> _Segment:
        seg = _Segment(path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644))
        seg.size = os.fstat(seg.fd).st_size
        self._segments.append(seg)
        return seg

    def _recover(self, path: Path) -> None:
        seg = self._open(path)
        data = memoryview(os.pread(seg.fd, seg.size, 0))
        off = 0
        while off + HEADER.size <= len(data):
            magic, seq, n, crc = HEADER.unpack_from(data, off)
            end = off + HEADER.size + n
            if magic != MAGIC or crc != zlib.crc32(data[off : off + _HEAD16.size]) or end > len(data):
                break
            if seq not in self._index:
                self._index[seq] = (seg, off + HEADER.size, n)
                seg.live.add(seq)
                seg.max_seq = max(seg.max_seq, seq)
            off = end
        if off < len(data):
            log.error("spool %s: %d bytes after offset %d are torn or corrupt (a crash mid-write?); cut off",
                      path, len(data) - off, off)
            os.ftruncate(seg.fd, off)
            seg.size = off

    def _save_state(self) -> None:
        if self._persisted_next != self.next_seq:
            save_json(self.root / "state.json", {"epoch": self.epoch, "next_seq": self.next_seq}, fsync=self.fsync)
            self._persisted_next = self.next_seq

    def maintain(self) -> None:
        """Give acknowledged segments back to the disk. Call every fraction of a second: batching keeps the
        state-file rewrite (which must come first, so a restart never hands out a dropped seq again) rare."""
        with self._lock:
            empty = [s for s in self._empty if not s.live]
            self._empty = set()
            if empty:
                self._save_state()
            for seg in empty:
                self._drop(seg)

    def _drop(self, seg: _Segment) -> None:
        if seg is getattr(self, "_active", None):
            os.ftruncate(seg.fd, 0)
            seg.size = 0
            return
        os.close(seg.fd)
        seg.path.unlink(missing_ok=True)
        self._segments.remove(seg)

    @property
    def bytes_used(self) -> int:
        return sum(s.size for s in self._segments)

    def __len__(self) -> int:
        return len(self._index)

    def seqs(self) -> list[int]:
        with self._lock:
            return sorted(self._index)

    def append(self, seq: int, payload, over_limit: bool = False) -> None:
        """`over_limit`: write even past max_bytes (the actor's close(): what send() accepted must not be lost)."""
        n = memoryview(payload).nbytes
        err = None
        with self._lock:
            if not over_limit and self.bytes_used + HEADER.size + n > self.max_bytes:
                raise SpoolFull(
                    f"the spool {self.root} holds {self.bytes_used / 1e6:.0f} MB of unacknowledged transitions "
                    f"(limit transport.spool_max_bytes = {self.max_bytes / 1e6:.0f} MB): the learner has not "
                    "acknowledged them; refusing to take more rather than drop operator data",
                    hint="check that the learner runs and is reachable, or raise transport.spool_max_bytes",
                )
            if self._active.size >= self.segment_bytes:
                old = self._active
                self._active = self._open(self.root / f"seg_{int(old.path.stem[4:]) + 1:08d}.log")
                if not old.live:
                    self._empty.add(old)
            seg = self._active
            try:
                written = os.writev(seg.fd, [_header(seq, n), payload])
            except OSError as e:
                written, err = -1, e
            if written != HEADER.size + n:
                os.ftruncate(seg.fd, seg.size)  # no torn record left behind
                raise SpoolFull(f"cannot write to the spool {self.root}: {err if written < 0 else 'short write'}",
                                hint="free disk space on the actor host")
            if self.fsync:
                os.fsync(seg.fd)
            self._index[seq] = (seg, seg.size + HEADER.size, n)
            seg.live.add(seq)
            seg.max_seq = max(seg.max_seq, seq)
            seg.size += HEADER.size + n
            self.next_seq = max(self.next_seq, seq + 1)

    def read(self, seq: int) -> bytes | None:
        with self._lock:
            loc = self._index.get(seq)
            return None if loc is None else os.pread(loc[0].fd, loc[2], loc[1])

    def ack(self, seq: int) -> bool:
        with self._lock:
            loc = self._index.pop(seq, None)
            if loc is None:
                return False
            seg = loc[0]
            seg.live.discard(seq)
            if not seg.live:
                self._empty.add(seg)
            return True

    def reject(self, seq: int, reason: str) -> None:
        payload = self.read(seq)
        if payload is not None:
            d = self.root / "rejected"
            d.mkdir(exist_ok=True)
            (d / f"{self.epoch}_{seq}.msg").write_bytes(payload)
            (d / f"{self.epoch}_{seq}.txt").write_text(reason + "\n")
        self.ack(seq)

    def close(self) -> None:
        self.maintain()
        with self._lock:
            self._save_state()
            for s in self._segments:
                os.close(s.fd)
            self._segments = []
