"""The learner process: receive transitions from any number of actors, keep them on disk, run BC + Q updates
once enough have arrived, publish adapter versions, checkpoint, and report.

Exactly-once: a received batch is added to the rollout buffer and committed *together with* the wire's
dedup record in one atomic write, and only then acknowledged. A crash before the commit loses nothing
(the actors still hold the transitions and resend them); a crash after it cannot double-count them (the
reopened record drops the resends, which are acknowledged again).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lastr1.files import save_json
from lastr1.learner.chunks import HumanChunks
from lastr1.learner.demos import fill_demo_buffer
from lastr1.learner.replay import ReplayBuffer
from lastr1.learner.schema import Schema
from lastr1.learner.trainer import LearnerError, Trainer, checkpoints, kill_point, latest_checkpoint

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from lastr1.configs.schema import Config
    from lastr1.policy import Policy

log = logging.getLogger(__name__)
INGEST_COUNTERS = ("received", "interventions", "episodes", "successes", "refused", "abandoned")


@dataclass
class Paths:
    root: Path

    @property
    def demo(self) -> Path:
        return self.root / "learner" / "demo_buffer"

    @property
    def rollout(self) -> Path:
        return self.root / "learner" / "rollout_buffer"

    @property
    def checkpoints(self) -> Path:
        """Where the checkpoint generations live (`checkpoint-<updates>/`, `checkpoint` → the newest)."""
        return self.root / "learner"

    @property
    def published(self) -> Path:
        return self.root / "learner" / "published.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard" / "learner"


def transition_row(t, latent_max: int, latent_dim: int, slow_cameras: tuple[str, ...] = ()) -> dict:
    """A wire Transition → a replay row (latents padded to L_max; the exit length kept for teacher forcing;
    `slow/<camera>` the frame each slow camera's prefix was reasoned from, the step's own when not sent)."""
    z = np.zeros((latent_max, latent_dim), np.float16)
    n = latent_max
    if t.latents is not None and t.latent_len > 0:
        n = int(t.latent_len)
        z[:n] = np.asarray(t.latents[:n], np.float16)
    row = {f"img/{c}": img for c, img in t.images.items()}
    row.update(proprio=np.asarray(t.proprio, np.float32), action=np.asarray(t.action, np.float32), latents=z,
               latent_len=np.int64(n), reward=np.float32(t.reward), terminated=np.bool_(t.terminated),
               truncated=np.bool_(t.truncated), intervention=np.bool_(t.intervention))
    for c in slow_cameras:
        row[f"slow/{c}"] = (t.slow_images or t.images).get(c, t.images[c])
    return row


def final_obs(t) -> dict | None:
    if t.next_images is None or t.next_proprio is None:
        return None
    return {**{f"img/{c}": v for c, v in t.next_images.items()}, "proprio": np.asarray(t.next_proprio, np.float32)}


class Learner:
    def __init__(self, cfg: Config, resume: bool = False, policy: Policy | None = None, link=None):
        from lastr1.policy import open_policy

        self.cfg = cfg
        self.paths = Paths(Path(cfg.run_dir))
        has_state = self.paths.rollout.joinpath("meta.json").is_file() or bool(checkpoints(self.paths.checkpoints))
        if has_state and not resume:
            raise LearnerError(f"{self.paths.root / 'learner'} already holds a learner's state",
                               hint="add --resume to continue it, or set --run_dir to a new folder")
        if policy is None:
            policy = open_policy(cfg)
        self.policy = policy
        self.schema = Schema.of(cfg, policy)
        lc = cfg.learner
        self.demo = ReplayBuffer(self.paths.demo, lc.demo_capacity)
        self.rollout = ReplayBuffer(self.paths.rollout, lc.rollout_capacity)
        demo_dir = self.paths.root / lc.demo_dir
        if demo_dir.is_dir():
            fill_demo_buffer(self.demo, demo_dir, policy.H, policy.L_max, lc.lerobot)
        elif not self.demo.committed:
            log.warning("no demonstrations at %s: the demo stream starts with human interventions only", demo_dir)
        self.trainer = Trainer(cfg, policy, self.demo, self.rollout)
        # What the actors were sent: a version number stands for one set of weights (its sha256, made after
        # `updates` updates); a resumed learner that is behind it publishes nothing until it is past it.
        self.published = json.loads(self.paths.published.read_text()) if self.paths.published.is_file() else {}
        found = latest_checkpoint(self.paths.checkpoints) if resume else None
        if found is not None:
            self.trainer.load(found)
            log.info("resumed from %s at update %d", found, self.trainer.counters.updates)
        elif resume and self.published.get("updates", 0) > 0:
            raise LearnerError(
                f"--resume: no complete checkpoint in {self.paths.checkpoints}, yet weights made after "
                f"{self.published['updates']} updates were published (v{self.published['version']})",
                hint="the learner's trained state is lost; to learn again from the initial weights while keeping "
                     f"the buffers, delete {self.paths.published} and any checkpoint-* folders there")
        elif resume:
            log.warning("--resume: no complete checkpoint in %s and nothing published from updates yet: "
                        "learning starts from the initial weights at update 0 (the buffers are kept)",
                        self.paths.checkpoints)
        # Counters of what arrived are committed with the rows themselves, so they always match the buffer.
        c, got = self.trainer.counters, self.rollout.extra.get("counters", {})
        for k in INGEST_COUNTERS:
            setattr(c, k, int(got.get(k, 0)))
        self.per_actor: dict[str, int] = dict(got.get("per_actor", {}))
        # Per actor stream: the episode still running and the newest finished one (committed with the rows).
        self.episodes: dict[str, dict[str, int]] = self.rollout.extra.get("episodes", {})
        self.chunks = HumanChunks(policy.H, self.rollout.extra.get("chunks"))
        self.version = max(int(self.published.get("version", 0)), policy.version)
        self._link = link
        self._writer: SummaryWriter | None = None
        self._last_broadcast = time.monotonic()
        self._last_status = 0.0
        self._rates = {"t": time.monotonic(), "updates": self.trainer.counters.updates}
        self._recent: dict[str, list[bool]] = {}
        self.last_stats: dict = {}

    # -- wiring ------------------------------------------------------------------------------------------

    @property
    def link(self):
        if self._link is None:
            from lastr1.transport.learner_link import LearnerLink

            self._link = LearnerLink(self.cfg.transport, keys_dir=self.cfg.path(self.cfg.transport.keys_dir),
                                     dedup_state=self.rollout.extra.get("dedup"),
                                     check_shapes=self.schema.declared_mismatches)
        return self._link

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            from lastr1.learner.view import scalar_view

            self._writer = scalar_view(SummaryWriter(str(self.paths.tensorboard)), self)
        return self._writer

    # -- the loop ----------------------------------------------------------------------------------------

    def ingest(self, timeout_s: float) -> int:
        ts = self.link.recv(timeout_s)
        if not ts:
            return 0
        c = self.trainer.counters
        taken, refused = [], []
        for t in ts:
            wrong = self.schema.mismatches(t)
            if wrong:
                refused.append((t, "does not fit the learner: " + "; ".join(wrong)))
                continue
            self._add(t)
            taken.append(t)
            self._track_episode(t)
            self.per_actor[t.actor_id] = self.per_actor.get(t.actor_id, 0) + 1
            c.received += 1
            c.interventions += int(t.intervention)
            if t.terminated or t.truncated:
                c.episodes += 1
                success = bool(t.terminated and t.reward > 0)
                c.successes += int(success)
                self._episode_curves(t.actor_id, t.step + 1, success)
        c.refused += len(refused)
        counts = {**{k: getattr(c, k) for k in INGEST_COUNTERS}, "per_actor": self.per_actor}
        self.rollout.commit(extra={**self.rollout.extra, "dedup": self.link.dedup_state(), "counters": counts,
                                   "episodes": self.episodes, "chunks": self.chunks.state()})
        kill_point("committed")
        self.link.ack(taken)
        for t, reason in refused:
            log.error("refused %s epoch %d seq %d (episode %d step %d) %s; the learner holds %s",
                      t.actor_id, t.epoch, t.seq, t.episode, t.step, reason, self.schema.describe())
            self.link.refuse(t, reason)
        return len(taken)

    def _add(self, t) -> None:
        """One transition into the rollout buffer; a human step sent with its executed action alone gets its
        chunk from the steps after it (learner/chunks.py), held out of sampling until that is final."""
        p = self.policy
        stream = f"{t.actor_id}/{t.epoch}/{t.episode}"
        row = transition_row(t, p.L_max, p.d, tuple(p.cfg.slow_cameras))
        human = t.intervention and t.action.shape[0] == 1
        if human:
            row["action"] = np.repeat(np.asarray(t.action, np.float32), p.H, 0)
        g = self.rollout.add(row, stream=stream, step=t.step, final_obs=final_obs(t))
        if human:
            self.rollout.hold(g)
        self._chunked(self.chunks.add(stream, t.step, g, t.action[0] if human else None,
                                      t.terminated or t.truncated))

    def _chunked(self, changed: list) -> None:
        for g, chunk, final in changed:
            self.rollout.patch(g, "action", chunk)
            self.rollout.hold(g, not final)

    def _track_episode(self, t) -> None:
        """An actor that starts a later episode while an earlier one never sent its last step crashed (or was
        killed) mid-episode: that episode is marked abandoned, in the counters and in the buffer."""
        key = f"{t.actor_id}/{t.epoch}"
        ep = self.episodes.setdefault(key, {"open": -1, "done": -1})
        if ep["open"] >= 0 and t.episode > ep["open"]:
            rows = self.rollout.abandon(f"{key}/{ep['open']}")
            self._chunked(self.chunks.close(f"{key}/{ep['open']}"))
            self.trainer.counters.abandoned += 1
            log.warning("%s episode %d ended without its last step (the actor stopped mid-episode): marked "
                        "abandoned (%d row(s) truncated, never sampled)", t.actor_id, ep["open"], rows)
            ep["open"] = -1
        if t.terminated or t.truncated:
            ep["done"] = max(ep["done"], t.episode)
            if ep["open"] == t.episode:
                ep["open"] = -1
        elif t.episode > ep["done"]:
            ep["open"] = max(ep["open"], t.episode)

    def _episode_curves(self, actor_id: str, length: int, success: bool) -> None:
        """Per finished episode: its length, and success / intervention rates over the last 20 episodes."""
        recent = self._recent.setdefault(actor_id, [])
        recent.append(success)
        del recent[:-20]
        c, w = self.trainer.counters, self.writer
        w.add_scalar("episodes/length", length, c.episodes)
        w.add_scalar("episodes/success", float(success), c.episodes)
        w.add_scalar(f"episodes/success_rate_last20/{actor_id}", sum(recent) / len(recent), c.episodes)
        w.add_scalar("episodes/intervention_rate", c.interventions / max(c.received, 1), c.episodes)

    def publish(self) -> int | None:
        """Send the current weights as a new version; returns it. A learner resumed from a checkpoint older than
        the last publication sends nothing (None) until it has done more updates than that version had: a
        newer number never carries older weights. At the very update of the last publication it re-sends that
        version, whose sha256 it checks."""
        from lastr1.transport.messages import Weights

        u, last = self.trainer.counters.updates, self.published
        if last and u <= last.get("updates", -1):
            if u == last["updates"]:
                w = Weights.create(self.policy.export_adapter(last["version"]).data, last["version"], {"updates": u})
                if w.sha256 == last["sha256"]:
                    self.link.publish_weights(w)
                    return w.version
            log.warning("at update %d, behind the published v%d (update %d): nothing is published until the "
                        "learner is past it (the actors keep v%d)", u, last["version"], last["updates"],
                        last["version"])
            return None
        version = self.version + 1
        blob = self.policy.export_adapter(version)
        w = Weights.create(blob.data, version, meta={"updates": u})
        # Recorded durably before any actor can see it: a restarted learner never hands out this number again.
        self.published = {"version": version, "sha256": w.sha256, "updates": u, "time": time.time()}
        save_json(self.paths.published, self.published)
        self.version = version
        self.link.publish_weights(w)
        self._last_broadcast = time.monotonic()
        log.info("published adapter v%d (%.0f KB, sha256 %s…)", version, len(blob.data) / 1024, w.sha256[:12])
        return version

    def step(self) -> dict | None:
        """Receive what has arrived; then one update if learning has started. Returns the update's stats."""
        lc = self.cfg.learner
        self.ingest(0.0 if self.trainer.ready() else 0.05)
        stats = None
        if self.trainer.ready():
            stats = self.trainer.update()
            self.last_stats = stats
            u = self.trainer.counters.updates
            for k, v in stats.items():
                self.writer.add_scalar(f"learner/{k}", v, u)
            due = (u % lc.broadcast_every_updates == 0
                   or time.monotonic() - self._last_broadcast > lc.broadcast_every_s)
            ahead = u > self.published.get("updates", -1)  # a resumed learner behind its last publication waits
            if due and ahead and self.trainer.counters.actor_steps:  # a critic-only start has nothing new to send
                self.publish()
            if u % lc.checkpoint_every_updates == 0:
                self.save()
        self._actor_stats()
        return stats

    def _actor_stats(self) -> int:
        """Log the stats the actors sent since the last call; returns how many."""
        got = self.link.stats()
        for s in got:
            step = self.trainer.counters.received
            for k, v in s.all_values().items():
                self.writer.add_scalar(f"actor/{s.sender or 'unknown'}/{k}", v, step)
        return len(got)

    def save(self) -> None:
        self.trainer.counters.version = self.version
        self.trainer.save(self.paths.checkpoints)

    def status_line(self) -> str:
        c = self.trainer.counters
        now = time.monotonic()
        dt = max(now - self._rates["t"], 1e-6)
        ups = (c.updates - self._rates["updates"]) / dt
        if dt > 5:
            self._rates = {"t": now, "updates": c.updates}
        alive = sum(a.alive for a in self.link.actors().values())
        by_actor = " ".join(f"{a}:{n}" for a, n in sorted(self.per_actor.items())) or "-"
        rate = c.interventions / c.received if c.received else 0.0
        state = "learning" if self.trainer.ready() else \
            f"waiting ({self.rollout.committed}/{self.cfg.learner.start_after} rollout transitions)"
        losses = " ".join(f"{k}={self.last_stats[k]:.3g}" for k in ("critic_loss", "bc_loss", "q")
                          if k in self.last_stats)
        return (f"{state} | actors {alive} alive [{by_actor}] | interv {rate:.0%} | episodes {c.episodes} "
                f"({c.successes} ok) | updates {c.updates} ({ups:.2f}/s) | v{self.version} {losses}")

    def run(self, stop: threading.Event | None = None, max_updates: int | None = None) -> None:
        stop = stop or threading.Event()
        tty = sys.stdout.isatty()
        self.publish()  # actors start from the learner's current weights
        log.info("learner ready: %s", self.status_line())
        try:
            while not stop.is_set():
                self.step()
                if max_updates is not None and self.trainer.counters.updates >= max_updates:
                    break
                if time.monotonic() - self._last_status > (1.0 if tty else 30.0):
                    self._last_status = time.monotonic()
                    line = self.status_line()
                    if tty:
                        print("\r" + line[:200].ljust(200), end="", flush=True)
                    else:
                        log.info(line)
        finally:
            if tty:
                print()
            self.close()

    def close(self) -> None:
        try:
            if self.trainer.counters.updates:
                self.save()
        finally:
            if self._link is not None:
                self._link.close()
            if self._writer is not None:
                self._writer.close()
