"""Which (actor_id, epoch, seq) the learner already has: per stream a contiguous watermark plus the few seqs
above it that arrived out of order. Small enough to save with every replay-buffer checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_VERSION = 1


class SeqSet:
    __slots__ = ("watermark", "above")

    def __init__(self, watermark: int = -1, above=()):
        self.watermark = watermark  # every seq ≤ watermark is in the set
        self.above: set[int] = set(above)

    def __contains__(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self.above

    def add(self, seq: int) -> bool:
        """True if `seq` is new."""
        if seq in self:
            return False
        self.above.add(seq)
        self._compact()
        return True

    def advance(self, to: int) -> None:
        """Mark every seq ≤ `to` as present: the actor has said it will never send anything below to + 1."""
        if to > self.watermark:
            self.watermark = to
            self.above = {s for s in self.above if s > to}
            self._compact()

    def _compact(self) -> None:
        while self.watermark + 1 in self.above:
            self.watermark += 1
            self.above.remove(self.watermark)


class Dedup:
    def __init__(self):
        self.streams: dict[tuple[str, int], SeqSet] = {}

    def _s(self, actor_id: str, epoch: int) -> SeqSet:
        return self.streams.setdefault((actor_id, epoch), SeqSet())

    def add(self, actor_id: str, epoch: int, seq: int) -> bool:
        return self._s(actor_id, epoch).add(seq)

    def __contains__(self, key: tuple[str, int, int]) -> bool:
        s = self.streams.get(key[:2])
        return s is not None and key[2] in s

    def watermark(self, actor_id: str, epoch: int) -> int:
        s = self.streams.get((actor_id, epoch))
        return -1 if s is None else s.watermark

    def advance(self, actor_id: str, epoch: int, to: int) -> None:
        self._s(actor_id, epoch).advance(to)

    def to_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "streams": [
                {"actor_id": a, "epoch": e, "watermark": s.watermark, "above": sorted(s.above)}
                for (a, e), s in sorted(self.streams.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> Dedup:
        out = cls()
        if not d:
            return out
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"dedup state version {d.get('version')!r}, this lastr1 reads {STATE_VERSION}")
        for s in d["streams"]:
            out.streams[(str(s["actor_id"]), int(s["epoch"]))] = SeqSet(int(s["watermark"]), map(int, s["above"]))
        return out

    def copy(self) -> Dedup:
        return Dedup.from_dict(self.to_dict())


def save_json(path: str | Path, obj: dict, fsync: bool = True) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
