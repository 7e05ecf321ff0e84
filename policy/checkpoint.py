"""A policy on disk: `save_policy` writes a folder, `load_policy` rebuilds it bit-identically, and
`open_policy` is what the actor, the learner and the evaluation start from.

A checkpoint folder holds the policy config, the normalisation statistics, the trainable weights (LoRA, new
modules, value and Q heads) and the Q targets; for the tiny random tower also its tokenizer and base weights.
A pretrained tower is read again from `policy.model`, so a 4B checkpoint stays the size of its adapters.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from lastr1 import configs
from lastr1.configs.policy import PolicyConfig
from lastr1.policy.action_tokenizer import NormStats
from lastr1.policy.build import ACTION_PER_ARM, PROPRIO_PER_ARM, build_policy
from lastr1.policy.errors import PolicyError
from lastr1.policy.model import Policy

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)

FORMAT = 1
_TARGETS = "q_targets."


def save_policy(policy: Policy, path: str | Path) -> Path:
    """Write `policy` to the folder `path` (replaced whole: a crash mid-write leaves the old one)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = dict(format=FORMAT, policy=configs.to_dict(policy.cfg), n_arms=policy.n_arms,
                proprio_dim=policy.proprio_dim, version=policy.version, source=policy.source)
    (tmp / "policy.json").write_text(json.dumps(meta, indent=1))
    (tmp / "stats.json").write_text(policy.stats.to_json())
    state = {k: v.detach().contiguous().cpu() for k, v in policy.trainable_state().items()}
    state.update({_TARGETS + k: v.contiguous().cpu() for k, v in policy.q_targets.state_dict().items()})
    save_file(state, str(tmp / "trainable.safetensors"))
    if policy.source == "tiny":
        policy.tokenizer.save(str(tmp / "tokenizer.json"))
        base = {k: v.detach().contiguous().cpu() for k, v in policy.named_parameters() if not v.requires_grad
                and not k.startswith(_TARGETS)}
        save_file(base, str(tmp / "base.safetensors"))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load_policy(path: str | Path, device: str | None = None) -> Policy:
    """The policy `save_policy` wrote to `path`, on `device` (default: the one it was saved from)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "policy.json").is_file():
        raise PolicyError(f"no policy checkpoint at {path}", hint="run `lastr1 warmup` to create one")
    meta = json.loads((path / "policy.json").read_text())
    if meta.get("format") != FORMAT:
        raise PolicyError(f"{path}: checkpoint format {meta.get('format')}, expected {FORMAT}")
    cfg = configs.build(PolicyConfig, meta["policy"], "policy")
    if device is not None:
        cfg.device = device
    policy = build_policy(cfg, meta["n_arms"], meta["proprio_dim"])
    if policy.source == "tiny":
        base = load_file(str(path / "base.safetensors"), device=str(policy.device))
        _copy_into(policy, base, lambda n, p: not p.requires_grad and not n.startswith(_TARGETS), path)
        policy.refresh_derived()
    state = load_file(str(path / "trainable.safetensors"), device=str(policy.device))
    _copy_into(policy, {k: v for k, v in state.items() if not k.startswith(_TARGETS)},
               lambda n, p: p.requires_grad, path)
    policy.q_targets.load_state_dict({k[len(_TARGETS):]: v for k, v in state.items() if k.startswith(_TARGETS)})
    policy.set_stats(NormStats.from_json((path / "stats.json").read_text()))
    policy.version = int(meta.get("version", 0))
    return policy


def open_policy(cfg: Config, n_arms: int | None = None) -> Policy:
    """`policy.checkpoint` (e.g. the warm-up's) if set, else — with a loud warning — a fresh policy from the
    config; either way one that acts for `n_arms` arms (default: the task's), or PolicyError."""
    n = cfg.task.n_arms if n_arms is None else n_arms
    if cfg.policy.checkpoint:
        where: Path | str = cfg.path(cfg.policy.checkpoint)
        policy = load_policy(where, device=cfg.policy.device)
        log.info("policy: %s (version %d)", where, policy.version)
    else:
        log.warning("policy.checkpoint is empty: starting from a FRESH %s policy with random heads — it will not "
                    "solve anything until trained. Run `lastr1 warmup` on demonstrations and set "
                    "policy.checkpoint.", "tiny random" if cfg.policy.model == "tiny" else cfg.policy.model)
        where = "the fresh policy"
        policy = build_policy(cfg.policy, n_arms=n)
    if (policy.D, policy.proprio_dim) != (ACTION_PER_ARM * n, PROPRIO_PER_ARM * n):
        raise PolicyError(f"{where} is a policy for {policy.n_arms} arm(s) ({policy.D}-d actions, "
                          f"{policy.proprio_dim}-d proprio); task {cfg.task.name} has {n}",
                          hint="set policy.checkpoint to one warmed up on this task's demonstrations "
                               "(`lastr1 warmup --config ...`)")
    return policy


def _copy_into(policy: nn.Module, tensors: dict[str, torch.Tensor], select: Callable[[str, nn.Parameter], bool],
               path: Path) -> None:
    own = {n: p for n, p in policy.named_parameters() if select(n, p)}
    if set(own) != set(tensors):
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        raise PolicyError(f"{path} does not match this policy build: missing {missing[:3]}, unknown {extra[:3]}",
                          hint="the checkpoint was written with a different policy config or lastr1 version")
    wrong = [n for n, t in tensors.items() if t.shape != own[n].shape]
    if wrong:
        raise PolicyError(f"{path} does not match this policy build: {wrong[0]} is {tuple(tensors[wrong[0]].shape)}"
                          f", expected {tuple(own[wrong[0]].shape)}",
                          hint="the checkpoint was written with a different policy config (sizes, lora_rank, acting)")
    with torch.no_grad():
        for n, t in tensors.items():
            own[n].copy_(t)
