"""One learner update as appendix D.4 describes it: 2 critic steps then 1 actor step, each accumulated over
16 micro-steps of (2 demo/intervention + 2 rollout) samples, AdamW without weight decay, gradients clipped
at 1.0; critic on the Q heads only, actor on the LoRA adapters, the new small modules and the value head.
The losses and why they are these: learner/losses.py and docs/learning.md.

The demo/intervention stream is the union of the recorded demonstrations (their own buffer) and the rollout
buffer's intervention rows (indexed, not copied, so their images are on disk once). Each row is teacher-
forced with the latents the actor actually produced (demonstrations: their DINOv3 targets at L_max).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from lastr1.errors import Lastr1Error
from lastr1.files import fsync_dir, fsync_tree
from lastr1.learner.losses import (
    RunningScale,
    actor_loss,
    advantage_weights,
    critic_loss,
    greedy_action,
    soft_update,
    td_target,
)
from lastr1.learner.replay import Batch, ReplayBuffer, State, concat

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.policy import Policy, TrainBatch

log = logging.getLogger(__name__)


class LearnerError(Lastr1Error):
    pass


@dataclass
class Counters:
    updates: int = 0
    critic_steps: int = 0
    actor_steps: int = 0
    version: int = 0
    received: int = 0
    interventions: int = 0
    episodes: int = 0
    successes: int = 0
    refused: int = 0  # transitions that did not fit the learner's schema
    abandoned: int = 0  # episodes an actor left half-finished (it crashed or was killed)
    extra: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: Config, policy: Policy, demo: ReplayBuffer, rollout: ReplayBuffer, seed: int | None = None):
        self.cfg = cfg
        self.lc = cfg.learner
        self.policy = policy
        self.demo = demo
        self.rollout = rollout
        self.rng = np.random.default_rng(self.lc.seed if seed is None else seed)
        torch.manual_seed(self.lc.seed if seed is None else seed)
        groups = policy.parameter_groups()
        self.actor_params = groups["lora"] + groups["new"] + groups["value"]
        self.critic_params = groups["critic"]
        if not self.actor_params or not self.critic_params:
            raise LearnerError("the policy exposes no trainable LoRA/head parameters to the learner")
        self.opt_actor = torch.optim.AdamW(self.actor_params, lr=self.lc.lr, weight_decay=self.lc.weight_decay)
        self.opt_critic = torch.optim.AdamW(self.critic_params, lr=self.lc.critic_lr,
                                            weight_decay=self.lc.weight_decay)
        self.counters = Counters()
        self.adv_scale = RunningScale()
        self.instruction = cfg.task.instruction

    # -- sampling ----------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Learning starts after `start_after` rollout transitions, with something in each stream."""
        return (self.rollout.committed >= self.lc.start_after and len(self.rollout) > 0
                and self._demo_pool_size() > 0)

    def _demo_pool_size(self) -> int:
        return len(self.demo) + self.rollout.count("intervention")

    def _sample_demo(self, n: int) -> tuple[Batch, int]:
        """n rows of the demo/intervention stream, drawn in proportion to the two sources' sizes; the first
        k of them (returned) are recorded demonstrations."""
        n_demo = len(self.demo)
        pool_i = self.rollout.sampleable()
        pool_i = pool_i[self.rollout.arrays["intervention"][pool_i].astype(bool)] if pool_i.size else pool_i
        total = n_demo + pool_i.size
        if total == 0:
            raise LearnerError("the demo/intervention stream is empty",
                               hint="record demonstrations (`lastr1 record`) or intervene during rollouts")
        k = int((self.rng.random(n) < n_demo / total).sum())
        parts = []
        if k:
            parts.append(self.demo.sample(self.rng, k))
        if n - k:
            parts.append(self.rollout.sample(self.rng, n - k, where=pool_i))
        return concat(parts), k

    def micro_batch(self) -> tuple[Batch, np.ndarray]:
        """The demo-stream rows then the rollout rows, and which of them BC learns from: every demo-stream
        row and any rollout row a human produced."""
        return self._micro_batch()[:2]

    def _micro_batch(self) -> tuple[Batch, np.ndarray, np.ndarray]:
        """`micro_batch` plus which rows are recorded demonstrations (their latents are DINOv3 targets)."""
        d, n_demo = self._sample_demo(self.lc.micro_batch_demo)
        r = self.rollout.sample(self.rng, self.lc.micro_batch_rollout)
        is_demo = np.zeros(len(d) + len(r), bool)
        is_demo[:n_demo] = True
        return concat([d, r]), np.concatenate([np.ones(len(d), bool), r.intervention]), is_demo

    def train_batch(self, s: State) -> TrainBatch:
        """The policy's teacher-forced input for states `s`: the slow cameras see the frames the prefix was
        reasoned from (`State.slow_images`), the fast ones the step's own."""
        from lastr1.policy import TrainBatch

        return TrainBatch(slow_images=s.slow_images, instructions=[self.instruction] * len(s), fast_images=s.images,
                          proprio=s.proprio, latents=s.latents.astype(np.float32), latent_len=s.latent_len)

    def executed(self, action) -> torch.Tensor:
        """What Q reads: the normalised action executed at the step, the chunk's first (B, H, D) → (B, D)."""
        return self.policy.normalize_action(np.asarray(action)[:, 0])

    # -- the two steps ------------------------------------------------------------------------------------

    def critic_inputs(self) -> list[tuple]:
        """The VLA's part of a critic step, once per update: for each of `grad_accum` micro-batches the state
        features, the executed action, r, terminated, and s′'s features and greedy action. The actor does not
        step between an update's critic steps, so these are exactly what each of them would recompute; the
        critic steps then cost only the Q heads (measured: the VLA forward was ~all of a critic step)."""
        p, out_ = self.policy, []
        with torch.no_grad():
            for _ in range(self.lc.grad_accum):
                b, _ = self.micro_batch()
                n = len(b)
                out = p.forward_train(self.train_batch(concat([b.state, b.next_state])))
                out_.append((out.feature[:n], self.executed(b.action),
                             torch.as_tensor(b.reward, dtype=torch.float32, device=p.device),
                             torch.as_tensor(b.terminated, device=p.device), out.feature[n:],
                             self._pi(out.action_logits[n:])))
        return out_

    def critic_step(self, inputs: list[tuple] | None = None) -> dict:
        p, lc = self.policy, self.lc
        inputs = self.critic_inputs() if inputs is None else inputs
        self.opt_critic.zero_grad(set_to_none=True)
        total, q_mean = 0.0, 0.0
        n_q = p.q_targets.n
        pick = torch.as_tensor(np.sort(self.rng.choice(n_q, min(lc.q_target_subset, n_q), replace=False)),
                               device=p.device)
        for feat, a, r, term, feat_next, a_next in inputs:
            y = td_target(r, term, p.q_target(feat_next, a_next)[pick], lc.gamma)  # the current target heads
            q = p.q(feat, a)
            loss = critic_loss(q, y) / len(inputs)
            loss.backward()
            total += float(loss.detach())
            q_mean += float(q.detach().mean()) / len(inputs)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.critic_params, lc.grad_clip)
        self.opt_critic.step()
        soft_update(p.q_targets, p.q_heads, lc.tau)
        self.counters.critic_steps += 1
        return {"critic_loss": total, "q": q_mean, "critic_grad_norm": float(grad_norm)}

    def _pi(self, logits: torch.Tensor) -> torch.Tensor:
        """The policy's greedy executed action from its chunk logits (B, H·D, K) → (B, D)."""
        return greedy_action(logits[:, : self.policy.D], self.policy.bin_centres)

    def actor_step(self) -> dict:
        from lastr1.policy import TrainOut, warmup

        p, lc = self.policy, self.lc
        self.opt_actor.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for _ in range(lc.grad_accum):
            b, learn_bc, is_demo = self._micro_batch()
            lens = b.state.latent_len.copy()
            cands = np.arange(p.G, p.L_max + 1, p.G)
            mode = p.cfg.latent_mode
            if mode == "adaptive":  # the warm-up's exit lengths; fixed: L_max (forward_train enforces it)
                lens[is_demo] = self.rng.choice(cands, int(is_demo.sum()))
            elif mode == "fixed":
                lens[is_demo] = p.L_max
            s = b.state
            out = p.forward_train(self.train_batch(State(s.images, s.proprio, s.latents, lens, s.slow_images)))
            tokens = p.action_targets(b.action)
            with torch.no_grad():
                feat = out.feature.detach()
                q_a = p.q(feat, self.executed(b.action)).min(0).values
                adv = q_a - p.q(feat, self._pi(out.action_logits)).min(0).values
                w = advantage_weights(adv, self.adv_scale.update(adv), lc.awr_temperature, lc.awr_w_max)
            bc_rows = torch.as_tensor(learn_bc, device=p.device)
            loss, info = actor_loss(out.action_logits, tokens, bc_rows, w, p.D, lc.beta_bc, lc.eta_q)
            info["adv"] = float(adv.mean())
            value = F.mse_loss(out.value, q_a)
            loss = loss + lc.w_value * value
            if is_demo.any() and mode != "off":  # reasoning kept trained on the demos' DINOv3 targets (warm-up terms)
                m = torch.as_tensor(is_demo, device=out.exit_logits.device)
                sub = TrainOut(out.action_logits[m], out.feature[m], out.exit_logits[m], out.pred_latents[m],
                               out.value[m])
                z = torch.as_tensor(s.latents[is_demo], dtype=torch.float32, device=m.device)
                terms = warmup.losses(p, sub, tokens[m], z, torch.as_tensor(lens[is_demo], device=m.device),
                                      use_latents=True)
                w_exit = lc.w_exit if mode == "adaptive" else 0.0
                loss = loss + lc.w_latent * terms["latent"] + w_exit * terms["exit"]
                info.update(latent_loss=float(terms["latent"].detach()), exit_loss=float(terms["exit"].detach()))
            info.update(actor_loss=float(loss.detach()), value_loss=float(value.detach()))
            (loss / lc.grad_accum).backward()
            for k, v in info.items():
                sums[k] = sums.get(k, 0.0) + v / lc.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(self.actor_params, lc.grad_clip)
        lr = self.actor_lr()
        for g in self.opt_actor.param_groups:
            g["lr"] = lr
        self.opt_actor.step()
        self.counters.actor_steps += 1
        return {**{k if k != "bc" else "bc_loss": v for k, v in sums.items()}, "adv_scale": self.adv_scale.value,
                "actor_grad_norm": float(grad_norm), "actor_lr": lr}

    def actor_lr(self) -> float:
        """lr, ramped linearly over the first `actor_lr_ramp_updates` actor steps (from lr/N)."""
        n = self.lc.actor_lr_ramp_updates
        return self.lc.lr * min(1.0, (self.counters.actor_steps + 1) / n) if n > 0 else self.lc.lr

    def update(self) -> dict:
        """2 critic steps (on one set of VLA features), then 1 actor step (the critic-to-actor ratio of D.4,
        `critic_updates_per_actor_update`; more critic steps cost only the Q heads); the first
        `critic_only_updates` updates leave the actor out."""
        self.policy.train()
        stats: dict = {}
        inputs = self.critic_inputs()
        for _ in range(self.lc.critic_updates_per_actor_update):
            stats.update(self.critic_step(inputs))
        if self.counters.updates >= self.lc.critic_only_updates:
            stats.update(self.actor_step())
        self.policy.eval()
        self.counters.updates += 1
        return stats

    # -- checkpoints --------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Adapters, heads, target heads (via the policy), optimisers, RNG and counters as a new generation
        `<folder>/checkpoint-<updates>`: written in full beside the older ones, fsynced, renamed into place in
        one step, and only then are older generations deleted and the `checkpoint` link moved to it. A kill at
        any instruction leaves at least the newest complete generation (`latest_checkpoint`). The buffers
        persist themselves (`commit`); their committed totals are recorded for the log."""
        from lastr1.policy.checkpoint import save_policy

        folder = Path(folder)
        path = folder / f"{GENERATION}{self.counters.updates:09d}"
        if path.is_dir():
            return path  # no update since: these weights and optimiser states are on disk already
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)  # a write cut short: never complete, never read
        tmp.mkdir(parents=True)
        save_policy(self.policy, tmp / "policy")
        kill_point("policy")
        torch.save({"actor": self.opt_actor.state_dict(), "critic": self.opt_critic.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        state = {"counters": self.counters.__dict__, "np_rng": self.rng.bit_generator.state,
                 "adv_sq": self.adv_scale.sq,
                 "buffers": {"demo": self.demo.committed, "rollout": self.rollout.committed}}
        (tmp / "learner.json").write_text(json.dumps(state, indent=1))
        fsync_tree(tmp)
        kill_point("written")
        os.replace(tmp, path)
        fsync_dir(folder)
        kill_point("renamed")
        link = folder / LINK
        if link.is_symlink() or not link.exists():
            tmp_link = folder / (LINK + ".tmp")
            tmp_link.unlink(missing_ok=True)
            tmp_link.symlink_to(path.name)
            os.replace(tmp_link, link)  # readers (`lastr1 demo`, eval) find the newest at a fixed path
        for old in checkpoints(folder):
            if old != path:
                shutil.rmtree(old)
                kill_point("pruned")
        fsync_dir(folder)
        return path

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint made by `save` into this trainer (its policy must have the same config)."""
        from lastr1.policy.checkpoint import load_policy

        path = Path(path)
        if not (path / "learner.json").is_file():
            raise LearnerError(f"no learner checkpoint at {path}", hint="start without --resume")
        saved = load_policy(path / "policy", device=str(self.policy.device))
        self.policy.swap(saved.trainable_state(), saved.version)
        self.policy.q_targets.load_state_dict(saved.q_targets.state_dict())
        self.policy.set_stats(saved.stats)
        opt = torch.load(path / "optim.pt", weights_only=True)
        self.opt_actor.load_state_dict(opt["actor"])
        self.opt_critic.load_state_dict(opt["critic"])
        torch.set_rng_state(opt["torch_rng"])
        state = json.loads((path / "learner.json").read_text())
        self.counters = Counters(**state["counters"])
        self.rng.bit_generator.state = state["np_rng"]
        self.adv_scale.sq = float(state.get("adv_sq", 1.0))


GENERATION, LINK = "checkpoint-", "checkpoint"
# The crash suite names a step here ("written", or "written:3" for its third passage) to have the process
# SIGKILLed exactly there: each step of the checkpoint write, and between the learner's commit and its ack.
KILL_ENV = "LASTR1_KILL_AT"
_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    want = os.environ.get(KILL_ENV)
    if not want or want.partition(":")[0] != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] >= int(want.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoints(folder: str | Path) -> list[Path]:
    """The complete generations in `folder`, oldest first (a `.tmp` one was cut short and does not count)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(GENERATION) and p.name[len(GENERATION):].isdigit()
             and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: int(p.name[len(GENERATION):]))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None
