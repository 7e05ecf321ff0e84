"""`lastr1 warmup`: the supervised warm-up on recorded demonstrations (paper appendix D.2).

    L = w_action · CE(action tokens) + w_exit · CE(<latent_end> at the sampled length) + w_latent · (1 − cos(ẑ, z*))

ẑ are the tower's predicted latents (the hidden state before each latent slot), teacher-forced with the
offline DINOv3 targets z* that `lastr1 latents` stored beside each episode. The exit term is a binary
cross-entropy over the candidates up to the sampled length: "continue" before it, "exit" at it. AdamW with
cosine decay to `min_lr_ratio`; a progress bar; TensorBoard curves in <out>.tb/; the checkpoint in <out>/.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from lastr1.policy.errors import PolicyError

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)


@dataclass
class WarmupResult:
    checkpoint: Path
    token_accuracy: float  # teacher-forced argmax accuracy on the demonstration steps, after training
    final_loss: float
    n_samples: int
    seconds: float


class DemoSet:
    """(episode, step) samples of the demonstrations, served as `TrainBatch`es."""

    def __init__(self, episodes, policy, latent_len: int, use_latents: bool, instruction: str, kappa: int = 1):
        self.episodes, self.policy, self.kappa = episodes, policy, max(1, int(kappa))
        self.latent_len, self.use_latents, self.instruction = latent_len, use_latents, instruction
        self.index = [(e, t) for e, ep in enumerate(episodes) for t in range(len(ep))]

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows, rng: np.random.Generator):
        from lastr1.policy.model import TrainBatch

        p = self.policy
        eps = [(self.episodes[e], t) for e, t in (self.index[i] for i in rows)]
        # Stale-prefix pairs, as the robot acts: the slow cameras (and latents) from a frame 0 … κ−1 steps older
        # than the fast cameras, proprio and action (LaST0's mixed operating frequencies).
        slow_t = [max(0, t - int(o)) for (_, t), o in zip(eps, rng.integers(0, self.kappa, len(eps)))]
        cands = np.arange(p.G, p.L_max + 1, p.G)
        lens = np.full(len(eps), self.latent_len) if self.latent_len else rng.choice(cands, len(eps))
        z = np.zeros((len(eps), p.L_max, p.d), np.float32)
        if self.use_latents:
            z[:] = np.stack([ep.latent_targets[ts][: p.L_max] for (ep, _), ts in zip(eps, slow_t)])
        batch = TrainBatch(
            slow_images={c: np.stack([ep.images[c][ts] for (ep, _), ts in zip(eps, slow_t)])
                         for c in p.cfg.slow_cameras},
            instructions=[ep.instruction or self.instruction for ep, _ in eps],
            fast_images={c: np.stack([ep.images[c][t] for ep, t in eps]) for c in p.cfg.fast_cameras},
            proprio=np.stack([ep.proprio[t] for ep, t in eps]).astype(np.float32),
            latents=z, latent_len=lens,
        )
        actions = np.stack([ep.action_chunk(t, p.H) for ep, t in eps])
        return batch, p.action_targets(actions), torch.from_numpy(z).to(p.device), torch.from_numpy(lens).to(p.device)


def losses(policy, out, tokens, z_star, lens, use_latents: bool) -> dict[str, torch.Tensor]:
    """The three warm-up terms (each a mean), plus the action-token accuracy."""
    ce = F.cross_entropy(out.action_logits.flatten(0, 1), tokens.flatten())
    g = lens // policy.G - 1
    cand = torch.arange(policy.n_groups, device=g.device)[None]
    seen = (cand <= g[:, None]).float()
    bce = F.binary_cross_entropy_with_logits(out.exit_logits, (cand == g[:, None]).float(), reduction="none")
    exit_loss = (bce * seen).sum() / seen.sum()
    if use_latents:
        used = (torch.arange(policy.L_max, device=g.device)[None] < lens[:, None]).float()
        cos = F.cosine_similarity(out.pred_latents, z_star, dim=-1)
        latent_loss = ((1 - cos) * used).sum() / used.sum()
    else:
        latent_loss = torch.zeros((), device=ce.device)
    acc = (out.action_logits.argmax(-1) == tokens).float().mean()
    return {"action": ce, "exit": exit_loss, "latent": latent_loss, "accuracy": acc.detach()}


def _check(episodes, policy, use_latents: bool) -> None:
    p = policy
    for ep in episodes:
        missing = [c for c in p.cfg.slow_cameras + p.cfg.fast_cameras if c not in ep.images]
        if missing:
            raise PolicyError(f"{ep.path}: no camera {missing} (has {sorted(ep.images)})",
                              hint="set policy.slow_cameras / policy.fast_cameras to the recorded cameras")
        if ep.action.shape[1] != p.D or ep.proprio.shape[1] != p.proprio_dim:
            raise PolicyError(f"{ep.path}: actions {ep.action.shape[1]}-d / proprio {ep.proprio.shape[1]}-d, the "
                              f"policy expects {p.D} / {p.proprio_dim} (task.n_arms = {p.n_arms})")
        if not use_latents:
            continue
        lt = ep.latent_targets
        if lt is None:
            raise PolicyError(f"{ep.path} has no latent targets",
                              hint="run `lastr1 latents --config ...` first (or warm up with --no-latent-loss)")
        if lt.shape[0] != len(ep) or lt.shape[1] < p.L_max or lt.shape[2] != p.d:
            raise PolicyError(f"{ep.path}: latent targets {lt.shape}, expected ({len(ep)}, ≥{p.L_max}, {p.d})",
                              hint="re-run `lastr1 latents` with this policy config (k = the tower's hidden size)")


def warmup(cfg: Config, dataset: str | Path | None = None, out: str | Path | None = None,
           no_latent_loss: bool | None = None, progress: bool = True) -> WarmupResult:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from lastr1.policy.action_tokenizer import NormStats
    from lastr1.policy.build import build_policy
    from lastr1.policy.checkpoint import save_policy
    from lastr1.transport.lerobot_store import load_demos

    wc = cfg.policy.warmup
    run_dir = Path(cfg.run_dir)
    dataset = Path(dataset) if dataset else cfg.path(cfg.learner.demo_dir)
    out = Path(out) if out else run_dir / wc.out
    use_latents = not (wc.no_latent_loss if no_latent_loss is None else no_latent_loss)
    use_latents = use_latents and cfg.policy.latent_mode != "off"  # Action-Only: nothing to predict
    episodes = load_demos(dataset, cfg.learner.lerobot)
    n_arms = cfg.task.n_arms
    proprio_dim = int(episodes[0].proprio.shape[1])
    torch.manual_seed(wc.seed)
    policy = build_policy(cfg.policy, n_arms=n_arms, proprio_dim=proprio_dim)
    _check(episodes, policy, use_latents)
    policy.set_stats(NormStats.from_arrays(np.concatenate([e.action for e in episodes]),
                                       np.concatenate([e.proprio for e in episodes]), cfg.policy.action_range))
    if wc.latent_len and (wc.latent_len % policy.G or not policy.G <= wc.latent_len <= policy.L_max):
        raise PolicyError(f"policy.warmup.latent_len {wc.latent_len} is not a candidate length (or 0 to sample)")
    mode = cfg.policy.latent_mode
    latent_len = policy.L_max if mode == "fixed" else wc.latent_len
    w_exit = 0.0 if mode != "adaptive" else wc.w_exit  # no exit to learn when the length is set or zero
    data = DemoSet(episodes, policy, latent_len, use_latents, cfg.task.instruction, kappa=cfg.policy.kappa)
    groups = policy.parameter_groups()
    params = groups["lora"] + groups["new"]
    opt = torch.optim.AdamW(params, lr=wc.lr, weight_decay=wc.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: wc.min_lr_ratio + (1 - wc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(s / wc.steps, 1))))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out.with_name(out.name + ".tb")))
    rng = np.random.default_rng(wc.seed)
    log.info("warm-up on %d steps of %d episodes from %s (latent reasoning %s, latent loss %s)", len(data),
             len(episodes), dataset, mode, "on" if use_latents else "off")
    policy.train()
    t0 = time.time()
    bar = tqdm(range(wc.steps), desc="warm-up", disable=not progress, dynamic_ncols=True)
    for step in bar:
        terms_sum: dict[str, float] = {}
        for _ in range(wc.grad_accum):
            batch, tokens, z, lens = data.batch(rng.integers(0, len(data), wc.batch_size), rng)
            terms = losses(policy, policy.forward_train(batch), tokens, z, lens, use_latents)
            loss = wc.w_action * terms["action"] + w_exit * terms["exit"] + wc.w_latent * terms["latent"]
            if not torch.isfinite(loss):
                raise PolicyError(f"warm-up loss became {float(loss)} at step {step}",
                                  hint="lower policy.warmup.lr")
            (loss / wc.grad_accum).backward()
            for k, v in dict(terms, total=loss).items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v) / wc.grad_accum
        torch.nn.utils.clip_grad_norm_(params, wc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        schedule.step()
        if step % wc.log_every == 0 or step == wc.steps - 1:
            for k, v in terms_sum.items():
                writer.add_scalar(f"warmup/{k}", v, step)
            writer.add_scalar("warmup/lr", schedule.get_last_lr()[0], step)
            bar.set_postfix(loss=f"{terms_sum['total']:.3f}", acc=f"{terms_sum['accuracy']:.2f}")
    policy.eval()
    accuracy = evaluate(policy, data, wc.batch_size)
    writer.add_scalar("warmup/final_token_accuracy", accuracy, wc.steps)
    writer.close()
    save_policy(policy, out)
    res = WarmupResult(out, accuracy, terms_sum.get("total", float("nan")), len(data), time.time() - t0)
    (out / "warmup.json").write_text(json.dumps(dict(
        dataset=str(dataset), episodes=len(episodes), samples=len(data), steps=wc.steps,
        token_accuracy=accuracy, final_loss=res.final_loss, latent_loss=use_latents, seconds=res.seconds)))
    return res


@torch.no_grad()
def evaluate(policy, data: DemoSet, batch_size: int) -> float:
    """Teacher-forced argmax accuracy of the action tokens over every demonstration step."""
    rng = np.random.default_rng(0)
    hits = total = 0
    for i in range(0, len(data), batch_size):
        batch, tokens, _, _ = data.batch(np.arange(i, min(i + batch_size, len(data))), rng)
        pred = policy.forward_train(batch).action_logits.argmax(-1)
        hits += int((pred == tokens).sum())
        total += tokens.numel()
    return hits / max(total, 1)
