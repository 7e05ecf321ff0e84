"""A disk-backed FIFO replay buffer: one `np.memmap` per field in a folder, so images live on disk (in the page
cache) once, a restart reopens the same rows, and capacity is bounded by disk rather than RAM.

Transitions do not carry their next observation (that would double the bytes on the wire and on disk); the
buffer links each row to the row of the same stream (actor, episode) and the next step, whichever of the two
arrives first (resends after a restart come out of order). The final
transition of an episode is ready at once when `terminated` (no bootstrap); a truncated one brings its
final observation along, stored as an observation-only row that is never sampled itself.

A row is a flat dict of arrays: `img/<camera>` and `proprio` (the observation), `latents` and `latent_len`
(what the policy fed back at that step), `action`, `reward`, `terminated`, `truncated`, `intervention`.
Sampling returns them typed (`Batch`, each observation side a `State`), never as prefixed keys.

Rows are addressed by a global insertion index `g`; row `g` lives at position `g % capacity` and is valid
while `g >= total - capacity`. A link to an evicted or not-yet-committed row is simply not sampleable.
`commit()` flushes the arrays and writes `meta.json` atomically: rows past the committed `total` are
ignored after a crash (their transitions were not yet acknowledged, so the actors resend them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lastr1.errors import Lastr1Error
from lastr1.files import save_json

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
IMG = "img/"  # an image field is `img/<camera>`
SLOW = "slow/"  # `slow/<camera>`: the frame the step's prefix was reasoned from (exact training context)
# Every row's fields beside its images; the observation ones are all that observation-only rows hold.
OBS_FIELDS = ("proprio",)
LATENT_FIELDS = ("latents", "latent_len")
STEP_FIELDS = ("action", "reward", "terminated", "truncated", "intervention")


def _is_obs(name: str) -> bool:
    return name.startswith(IMG) or name in OBS_FIELDS


@dataclass
class State:
    """What the policy is conditioned on at a step, batched: the observation and the latents it fed back."""

    images: dict[str, np.ndarray]  # camera → (B, H, W, 3) uint8
    proprio: np.ndarray  # (B, P) float32, robot units
    latents: np.ndarray  # (B, L_max, d) float16, padded past latent_len
    latent_len: np.ndarray  # (B,) int64
    # camera → (B, H, W, 3): the frames the step's prefix (KV cache, latents) was reasoned from, which with
    # policy.kappa > 1 are older than `images`; a row without `slow/<camera>` fields lends its own images
    slow_images: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.proprio)


@dataclass
class Batch:
    """Sampled transitions. A terminated row's `next_state` is its own (masked by 1 − terminated in the TD
    target); a truncated final row's is the final observation it brought, with its own latents."""

    state: State
    next_state: State
    action: np.ndarray  # (B, H, D) float32: the chunk executed from `state`, robot units
    reward: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool
    truncated: np.ndarray  # (B,) bool
    intervention: np.ndarray  # (B,) bool: a person produced the action

    def __len__(self) -> int:
        return len(self.reward)


def concat(parts: list[Any]) -> Any:
    """Batches (or States) of the same buffers → one, rows in order."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (Batch, State)):
        return type(first)(**{f.name: concat([getattr(p, f.name) for p in parts]) for f in fields(first)})
    return np.concatenate(parts)


class ReplayBuffer:
    def __init__(self, root: str | Path, capacity: int):
        self.root = Path(root)
        self.capacity = int(capacity)
        self.total = 0  # rows added (committed or not)
        self.committed = 0
        self.spec: dict[str, Field] = {}
        self.arrays: dict[str, np.memmap] = {}
        # "<stream>#<step>" -> global index of a row still waiting for its successor (wait_next) or for its
        # predecessor (wait_prev): each link is made by whichever of the two rows arrives second.
        self.wait_next: dict[str, int] = {}
        self.wait_prev: dict[str, int] = {}
        # Rows not sampled until their data is final (a human step whose chunk is still being assembled).
        self.held: set[int] = set()
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
        if "last" in meta:  # written before rows were linked by step: its rows wait for their successor
            self.wait_next = {f"{k}#{s}": int(g) for k, (g, s) in meta["last"].items()}
        else:
            self.wait_next, self.wait_prev = meta["wait_next"], meta["wait_prev"]
        self.held = set(meta.get("held", []))
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
        missing = sorted(set(OBS_FIELDS + LATENT_FIELDS + STEP_FIELDS) - set(row))
        if missing:
            raise ReplayError(f"a replay row needs the fields {missing} too")
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
        for waits in (self.wait_next, self.wait_prev):  # rows evicted meanwhile will never be linked
            for k in [k for k, g in waits.items() if not self._valid(g)]:
                del waits[k]
        self.held = {g for g in self.held if self._valid(g)}
        for arr in self.arrays.values():
            arr.flush()
        meta = {
            "capacity": self.capacity,
            "total": self.total,
            "spec": {k: [list(f.shape), f.dtype] for k, f in self.spec.items()},
            "wait_next": self.wait_next,
            "wait_prev": self.wait_prev,
            "held": sorted(self.held),
            "extra": self.extra,
        }
        save_json(self.root / META, meta)  # after the arrays' flush: the index never names rows not on disk
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
        if step > 0:
            prev = self.wait_next.pop(f"{stream}#{step - 1}", None)
            if prev is not None and self._valid(prev):
                self.arrays["next"][prev % self.capacity] = g
            else:
                self.wait_prev[f"{stream}#{step}"] = g
        if bool(row["terminated"]) or bool(row["truncated"]):
            if final_obs is not None and not bool(row["terminated"]):
                o = self._write({k: v for k, v in final_obs.items()}, obs_only=True)
                self.arrays["next"][g % self.capacity] = o
            return g
        succ = self.wait_prev.pop(f"{stream}#{step + 1}", None)
        if succ is not None and self._valid(succ):
            self.arrays["next"][g % self.capacity] = succ
        else:
            self.wait_next[f"{stream}#{step}"] = g
        return g

    def hold(self, g: int, held: bool = True) -> None:
        """Keep row `g` out of sampling (`held`) until its data is final, or let it in again."""
        (self.held.add if held else self.held.discard)(g)

    def patch(self, g: int, name: str, value) -> None:
        """Rewrite one field of row `g` (still in the buffer): e.g. a human step's chunk as it is assembled."""
        if self._valid(g):
            self.arrays[name][g % self.capacity] = value

    def abandon(self, stream: str) -> int:
        """`stream` will never continue (its actor stopped mid-episode): its rows still waiting for a successor
        are marked truncated, which they now are (without a final observation they are never sampled), and
        stop waiting. Returns how many."""
        keys = [k for k in self.wait_next if k.rpartition("#")[0] == stream]
        for k in keys:
            g = self.wait_next.pop(k)
            if self._valid(g):
                self.arrays["truncated"][g % self.capacity] = True
        return len(keys)

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
        if self.held:
            ok &= ~np.isin(gid, np.fromiter(self.held, np.int64))
        return np.flatnonzero(ok)

    def __len__(self) -> int:
        return int(self.sampleable().size)

    def sample(self, rng: np.random.Generator, n: int, where: np.ndarray | None = None) -> Batch:
        """`n` rows (with replacement), from `where` (positions; default: every sampleable row)."""
        pool = self.sampleable() if where is None else where
        if pool.size == 0:
            raise ReplayError("the replay buffer has no sampleable transitions yet")
        pos = pool[rng.integers(0, pool.size, size=n)]
        return self.gather(pos)

    def gather(self, pos: np.ndarray) -> Batch:
        """The transitions at `pos`, each with its next state: the next row's observation and latents (an
        observation-only next row lends its own row's latents)."""
        pos = np.sort(np.asarray(pos))  # sorted reads are kinder to a memmap
        nxt = self.arrays["next"][pos]
        term = self.arrays["terminated"][pos].astype(bool)
        npos = np.where(term | (nxt < 0), pos, nxt % self.capacity)
        tpos = np.where(self.arrays["obs_only"][npos], pos, npos)
        a = self.arrays
        return Batch(state=self._state(pos, pos), next_state=self._state(npos, tpos), action=np.array(a["action"][pos]),
                     reward=np.array(a["reward"][pos]), terminated=term, truncated=a["truncated"][pos].astype(bool),
                     intervention=a["intervention"][pos].astype(bool))

    def _state(self, obs_pos: np.ndarray, latent_pos: np.ndarray) -> State:
        images = {name[len(IMG):]: np.array(self.arrays[name][obs_pos]) for name in self.spec if name.startswith(IMG)}
        slow = dict(images)
        own = self.arrays["obs_only"][obs_pos]  # a final observation: reasoned afresh from itself
        for name in self.spec:
            if name.startswith(SLOW):
                c = name[len(SLOW):]
                slow[c] = np.where(own[:, None, None, None], images[c], self.arrays[name][obs_pos])
        return State(images=images, proprio=np.array(self.arrays["proprio"][obs_pos]),
                     latents=np.array(self.arrays["latents"][latent_pos]),
                     latent_len=np.array(self.arrays["latent_len"][latent_pos]), slow_images=slow)

    def count(self, field: str) -> int:
        """How many sampleable rows have a true `field` (e.g. `intervention`)."""
        pool = self.sampleable()
        return int(self.arrays[field][pool].astype(bool).sum()) if pool.size else 0
