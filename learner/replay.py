"""A disk-backed FIFO replay buffer: one `np.memmap` per field in a folder, so images live on disk (in the page
cache) once, a restart reopens the same rows, and capacity is bounded by disk rather than RAM.

Transitions do not carry their next observation (that would double the bytes on the wire and on disk); the
buffer links each row to the next row of the same stream (actor, episode) when it arrives. The final
transition of an episode is ready at once when `terminated` (no bootstrap); a truncated one brings its
final observation along, stored as an observation-only row that is never sampled itself.

Rows are addressed by a global insertion index `g`; row `g` lives at position `g % capacity` and is valid
while `g >= total - capacity`. A link to an evicted or not-yet-committed row is simply not sampleable.
`commit()` flushes the arrays and writes `meta.json` atomically: rows past the committed `total` are
ignored after a crash (their transitions were not yet acknowledged, so the actors resend them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lastr1.errors import Lastr1Error

META = "meta.json"


class ReplayError(Lastr1Error):
    pass


@dataclass(frozen=True)
class Field:
    shape: tuple[int, ...]
    dtype: str


# Bookkeeping fields every buffer has, beside the data fields given by the first row.
_BOOK = {
    "gid": Field((), "int64"),  # global index of the row stored at this position (-1: never written)
    "next": Field((), "int64"),  # global index of the next row of the same stream (-1: not known yet)
    "obs_only": Field((), "bool"),
}
# Data fields that describe the transition rather than the observation (zero in observation-only rows).
OBS_PREFIXES = ("img/", "proprio")


def _is_obs(name: str) -> bool:
    return name.startswith(OBS_PREFIXES)


class ReplayBuffer:
    def __init__(self, root: str | Path, capacity: int):
        self.root = Path(root)
        self.capacity = int(capacity)
        self.total = 0  # rows added (committed or not)
        self.committed = 0
        self.spec: dict[str, Field] = {}
        self.arrays: dict[str, np.ndarray] = {}
        # stream key -> (global index, step) of its latest transition row
        self.last: dict[str, tuple[int, int]] = {}
        # Small state that must be durable together with the rows (e.g. the wire's dedup record).
        self.extra: dict = {}
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / META).is_file():
            self._reopen()

    # -- storage -----------------------------------------------------------------------------------------

    def _reopen(self) -> None:
        meta = json.loads((self.root / META).read_text())
        if meta["capacity"] != self.capacity:
            raise ReplayError(
                f"{self.root} was created with capacity {meta['capacity']}, the config asks for {self.capacity}",
                hint="use the capacity the buffer was made with, or point the learner at a new run_dir",
            )
        self.spec = {k: Field(tuple(v[0]), v[1]) for k, v in meta["spec"].items()}
        self.total = self.committed = int(meta["total"])
        self.last = {k: (int(g), int(s)) for k, (g, s) in meta["last"].items()}
        self.extra = meta.get("extra", {})
        if self.spec:
            self._open_arrays(mode="r+")

    def _open_arrays(self, mode: str) -> None:
        for name, f in {**self.spec, **_BOOK}.items():
            path = self.root / (name.replace("/", "__") + ".npy")
            if mode == "r+" and not path.is_file():
                raise ReplayError(f"{path} is missing from the replay buffer", hint="the buffer folder is damaged")
            arr = np.lib.format.open_memmap(
                path, mode="w+" if mode == "w+" else "r+", dtype=np.dtype(f.dtype), shape=(self.capacity, *f.shape)
            )
            if mode == "w+" and name in ("gid", "next"):
                arr[:] = -1
            self.arrays[name] = arr

    def _create(self, row: dict[str, np.ndarray]) -> None:
        self.spec = {}
        for name, v in row.items():
            v = np.asarray(v)
            if name in _BOOK:
                raise ReplayError(f"field name {name!r} is reserved")
            self.spec[name] = Field(tuple(v.shape), v.dtype.str)
        self._open_arrays(mode="w+")

    def commit(self, extra: dict | None = None) -> None:
        """Make every row added so far durable, with `extra` in the same atomic write: after this returns
        they survive a crash together."""
        if extra is not None:
            self.extra = extra
        for arr in self.arrays.values():
            arr.flush()
        meta = {
            "capacity": self.capacity,
            "total": self.total,
            "spec": {k: [list(f.shape), f.dtype] for k, f in self.spec.items()},
            "last": {k: list(v) for k, v in self.last.items()},
            "extra": self.extra,
        }
        tmp = self.root / (META + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.root / META)
        self.committed = self.total

    # -- adding ------------------------------------------------------------------------------------------

    def _write(self, row: dict[str, np.ndarray], obs_only: bool) -> int:
        if not self.spec:
            self._create(row)
        missing = set(self.spec) - set(row) - (set() if not obs_only else {k for k in self.spec if not _is_obs(k)})
        extra = set(row) - set(self.spec)
        if missing or extra:
            raise ReplayError(
                f"row fields differ from the buffer's: missing {sorted(missing)}, unexpected {sorted(extra)}",
                hint="every transition into one buffer must have the same cameras, proprio and latent sizes",
            )
        g = self.total
        pos = g % self.capacity
        for name, f in self.spec.items():
            if name in row:
                v = np.asarray(row[name])
                if v.shape != f.shape:
                    raise ReplayError(f"field {name!r}: shape {v.shape}, the buffer holds {f.shape}")
                self.arrays[name][pos] = v
            else:
                self.arrays[name][pos] = 0
        self.arrays["gid"][pos] = g
        self.arrays["next"][pos] = -1
        self.arrays["obs_only"][pos] = obs_only
        self.total += 1
        return g

    def add(self, row: dict[str, np.ndarray], stream: str, step: int, final_obs: dict | None = None) -> int:
        """Add one transition of `stream` (e.g. "actor0/17": actor and episode) at control step `step`.

        `row` must hold `terminated` and `truncated`; `final_obs` (the observation after a truncated final step)
        makes that step usable for bootstrapping."""
        g = self._write(row, obs_only=False)
        prev = self.last.get(stream)
        if prev is not None and prev[1] == step - 1 and self._valid(prev[0]):
            self.arrays["next"][prev[0] % self.capacity] = g
        self.last[stream] = (g, step)
        if bool(row["terminated"]) or bool(row["truncated"]):
            self.last.pop(stream, None)
            if final_obs is not None and not bool(row["terminated"]):
                o = self._write({k: v for k, v in final_obs.items()}, obs_only=True)
                self.arrays["next"][g % self.capacity] = o
        return g

    # -- sampling ----------------------------------------------------------------------------------------

    def _valid(self, g) -> np.ndarray:
        g = np.asarray(g)
        return (g >= 0) & (g >= self.total - self.capacity) & (g < self.total)

    def sampleable(self) -> np.ndarray:
        """Positions of rows that can be sampled: committed transitions whose next state is known (or that
        terminated)."""
        n = min(self.total, self.capacity)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        gid = self.arrays["gid"][:n]
        ok = self._valid(gid) & (gid < self.committed) & ~self.arrays["obs_only"][:n]
        term = self.arrays["terminated"][:n].astype(bool)
        nxt = self.arrays["next"][:n]
        ok &= term | (self._valid(nxt) & (nxt < self.committed))
        return np.flatnonzero(ok)

    def __len__(self) -> int:
        return int(self.sampleable().size)

    def sample(self, rng: np.random.Generator, n: int, where: np.ndarray | None = None,
               next_extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """`n` rows (with replacement) plus `next/<obs field>` for each; a terminated row's next observation
        is its own (it is masked by `1 - terminated` in the TD target)."""
        pool = self.sampleable() if where is None else where
        if pool.size == 0:
            raise ReplayError("the replay buffer has no sampleable transitions yet")
        pos = pool[rng.integers(0, pool.size, size=n)]
        return self.gather(pos, next_extra)

    def gather(self, pos: np.ndarray, next_extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Rows at `pos` and `next/<field>` for the observation fields and for `next_extra` (transition
        fields such as the latents of the next step; an observation-only next row lends its own row's)."""
        pos = np.sort(np.asarray(pos))  # sorted reads are kinder to a memmap
        batch = {name: np.array(self.arrays[name][pos]) for name in self.spec}
        nxt = self.arrays["next"][pos]
        term = self.arrays["terminated"][pos].astype(bool)
        npos = np.where(term | (nxt < 0), pos, nxt % self.capacity)
        tpos = np.where(self.arrays["obs_only"][npos], pos, npos)
        for name in self.spec:
            if _is_obs(name):
                batch[f"next/{name}"] = np.array(self.arrays[name][npos])
            elif name in next_extra:
                batch[f"next/{name}"] = np.array(self.arrays[name][tpos])
        return batch

    def count(self, field: str) -> int:
        """How many sampleable rows have a true `field` (e.g. `intervention`)."""
        pool = self.sampleable()
        return int(self.arrays[field][pool].astype(bool).sum()) if pool.size else 0
