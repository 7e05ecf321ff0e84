"""Which (actor_id, epoch, seq) the learner already has: per stream a contiguous watermark plus the few seqs
above it that arrived out of order. Small enough to save with every replay-buffer checkpoint.

Bounded whatever an authenticated actor sends: a stream remembers only seqs within WINDOW above its watermark
(the link drops anything further unacknowledged; the actor's heartbeat `first_unacked` moves the watermark on
and its resend brings it back), and an actor keeps at most MAX_EPOCHS streams (a new epoch evicts its lowest:
epochs are creation times, so that is the oldest spool, long since acknowledged). At most
MAX_EPOCHS × WINDOW seqs per actor, ~12 bytes each in the saved JSON."""

from __future__ import annotations

STATE_VERSION = 1
WINDOW = 1 << 16  # well above any honest backlog: a 64 GiB spool of 1 MiB transitions
MAX_EPOCHS = 8


class SeqSet:
    __slots__ = ("watermark", "above")

    def __init__(self, watermark: int = -1, above=()):
        self.watermark = watermark  # every seq ≤ watermark is in the set
        self.above: set[int] = set(above)

    def __contains__(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self.above

    def fits(self, seq: int) -> bool:
        """Inside the window a stream remembers."""
        return self.watermark < seq <= self.watermark + WINDOW

    def add(self, seq: int) -> bool:
        """True if `seq` is new; one outside the window is not recorded (False)."""
        if seq in self or not self.fits(seq):
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
        s = self.streams.get((actor_id, epoch))
        if s is not None:
            return s
        if epoch < self._lowest_kept(actor_id):
            return SeqSet()  # older than every stream kept: nothing of it is remembered
        mine = sorted(e for a, e in self.streams if a == actor_id)
        for e in mine[: max(0, len(mine) - MAX_EPOCHS + 1)]:
            del self.streams[(actor_id, e)]
        s = self.streams[(actor_id, epoch)] = SeqSet()
        return s

    def add(self, actor_id: str, epoch: int, seq: int) -> bool:
        """True if the seq is new and now recorded; False for a duplicate or a seq outside the window."""
        return self._s(actor_id, epoch).add(seq)

    def fits(self, actor_id: str, epoch: int, seq: int) -> bool:
        """Whether `add` would record this seq (an unknown epoch starts at watermark −1)."""
        s = self.streams.get((actor_id, epoch))
        return s.fits(seq) if s is not None else SeqSet().fits(seq) and epoch > self._lowest_kept(actor_id)

    def _lowest_kept(self, actor_id: str) -> int:
        """A new epoch below this would be evicted at once: the actor has MAX_EPOCHS newer ones."""
        mine = sorted((e for a, e in self.streams if a == actor_id), reverse=True)
        return mine[MAX_EPOCHS - 1] if len(mine) >= MAX_EPOCHS else -1

    def size(self) -> int:
        """Seqs held above the watermarks, over every stream: what the saved state grows with."""
        return sum(len(s.above) for s in self.streams.values())

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
