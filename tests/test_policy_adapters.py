"""LoRA placement and gradients, adapter export/import, checkpoints, the learner-facing helpers."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from policy_helpers import INSTRUCTION, batch_from, frames, perturb_trainables, tiny_policy


@pytest.mark.parametrize("acting", ["expert", "shared"])
def test_gradients_reach_lora_of_both_towers_and_nothing_frozen(acting):
    p = tiny_policy(acting=acting, lora_mlp=True)
    obs = [frames(1), frames(2)]
    z = torch.randn(2, p.L_max, p.d)
    out = p.forward_train(batch_from(obs, z, [8, 4]))
    targets = torch.randint(0, p.cfg.n_bins, (2, p.H * p.D)).to(p.device)
    loss = torch.nn.functional.cross_entropy(out.action_logits.flatten(0, 1), targets.flatten())
    loss = loss + (1 - torch.cosine_similarity(out.pred_latents, z.to(p.device), -1)).mean() + out.exit_logits.sum()
    loss = loss + out.value.sum()
    loss.backward()
    lora = {n: q for n, q in p.named_parameters() if "lora_" in n}
    towers = {"vlm.language_model", "expert"} if acting == "expert" else {"vlm.language_model"}
    for tower in towers:
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            names = [n for n in lora if n.startswith(tower) and f".{proj}.lora_B" in n]
            assert len(names) == p.cfg.tiny.layers, (tower, proj)
            # LoRA B starts at zero so A's gradient is zero at init; B's carries the signal
            assert all(lora[n].grad is not None and lora[n].grad.abs().sum() > 0 for n in names), (tower, proj)
    assert not any("visual" in n for n in lora)  # the vision encoder has no adapters
    for n, q in p.named_parameters():
        if not q.requires_grad:
            assert q.grad is None, n
    frozen = [n for n, q in p.named_parameters() if not q.requires_grad]
    assert any(n.startswith("vlm.visual.") for n in frozen) and any("base_layer" in n for n in frozen)
    groups = p.parameter_groups()
    assert {id(q) for q in groups["lora"]} == {id(q) for q in lora.values()}
    for name in ("new", "value"):
        assert all(q.grad is not None for q in groups[name]), name
    assert all(q.grad is None for q in groups["critic"])  # Q is not in this loss


def test_adapter_export_load_reproduces_outputs_exactly():
    trained = tiny_policy()
    perturb_trainables(trained, seed=4)
    blob = trained.export_adapter(version=7)
    assert trained.version == 7 and len(blob.sha256) == 64
    keys = set(trained.trainable_state())
    assert all("lora_" in k or k.split(".")[0] in trained._NEW + ("value_head", "q_heads") for k in keys)
    fresh = tiny_policy()
    o = frames(3)
    before = fresh.act(fresh.reason({"front": o["front"]}, INSTRUCTION), {"wrist": o["wrist"]}, o["proprio"])
    fresh.load_adapter(blob)
    assert fresh.version == 7
    a_pre = trained.reason({"front": o["front"]}, INSTRUCTION)
    b_pre = fresh.reason({"front": o["front"]}, INSTRUCTION)
    a = trained.act(a_pre, {"wrist": o["wrist"]}, o["proprio"])
    b = fresh.act(b_pre, {"wrist": o["wrist"]}, o["proprio"])
    assert torch.equal(a_pre.latents, b_pre.latents) and torch.equal(a_pre.exit_logits, b_pre.exit_logits)
    assert a_pre.value == b_pre.value and b_pre.version == 7
    assert np.array_equal(a.tokens, b.tokens) and a.logprob == b.logprob and torch.equal(a.feature, b.feature)
    assert not torch.equal(before.feature, b.feature)  # the adapter really changed the fresh policy
    feat, act = torch.randn(3, trained.d_act).to(trained.device), (torch.rand(3, trained.D) * 2 - 1).to(trained.device)
    assert torch.equal(trained.q(feat, act), fresh.q(feat, act))


def test_bad_adapters_are_rejected_and_leave_the_policy_unchanged():
    from lastr1.policy import AdapterBlob, AdapterError
    from lastr1.policy.adapter import pack

    p = tiny_policy()
    good = p.export_adapter(1)
    state0 = {k: v.clone() for k, v in p.trainable_state().items()}
    tampered = dataclasses.replace(good, data=good.data[:-1] + bytes([good.data[-1] ^ 1]))
    relabelled = AdapterBlob(good.data, 2, good.sha256)
    other = tiny_policy(lora_rank=4).export_adapter(1)
    nan_state = {k: v.clone() for k, v in p.trainable_state().items()}
    next(iter(nan_state.values())).fill_(float("nan"))
    junk = AdapterBlob(b"junk", 1, hashlib.sha256(b"junk").hexdigest())
    for bad, msg in [(tampered, "sha256"), (relabelled, "version"), (other, "shape"),
                     (pack(nan_state, 3), "NaN"), (junk, "safetensors")]:
        with pytest.raises(AdapterError, match=msg):
            p.load_adapter(bad)
    assert all(torch.equal(v, state0[k]) for k, v in p.trainable_state().items()) and p.version == 1


def test_checkpoint_round_trip(tmp_path):
    from lastr1.learner.losses import soft_update
    from lastr1.policy import NormStats, load_policy, save_policy

    p = tiny_policy(acting="expert")
    perturb_trainables(p, seed=9)
    p.set_stats(NormStats([-0.5] * 7, [0.5] * 7, [0.1] * 8, [2.0] * 8))
    soft_update(p.q_targets, p.q_heads, 0.5)
    p.version = 3
    path = save_policy(p, tmp_path / "ckpt")
    q = load_policy(path)
    assert q.version == 3 and q.stats == p.stats
    o = frames(6)
    a = p.act(p.reason({"front": o["front"]}, INSTRUCTION), {"wrist": o["wrist"]}, o["proprio"])
    b = q.act(q.reason({"front": o["front"]}, INSTRUCTION), {"wrist": o["wrist"]}, o["proprio"])
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.action, b.action)
    feat, act = torch.randn(2, p.d_act).to(p.device), torch.zeros(2, p.D, device=p.device)
    assert torch.equal(p.q_target(feat, act), q.q_target(feat, act))
    # a checkpoint of another build is refused with a reason, not half-loaded
    import json

    from lastr1.policy import PolicyError

    meta = json.loads((path / "policy.json").read_text())
    meta["policy"]["lora_rank"] = 4
    (path / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyError, match="does not match"):
        load_policy(path)


def test_open_policy_loads_the_checkpoint_or_builds_one_for_the_tasks_arms(tmp_path, caplog):
    """What actor, learner and evaluation start from (policy/checkpoint.py `open_policy`)."""
    from lastr1 import configs
    from lastr1.policy import PolicyError, open_policy, save_policy

    p = tiny_policy()
    perturb_trainables(p, seed=2)
    p.version = 5
    save_policy(p, tmp_path / "run" / "ckpt")
    cfg = configs.load("sim_insert_hex", ["--run_dir", str(tmp_path / "run")])
    cfg.policy = dataclasses.replace(p.cfg, checkpoint="ckpt")  # relative: found inside run_dir
    q = open_policy(cfg)
    assert q.version == 5 and q.n_arms == 1
    assert all(torch.equal(v, p.trainable_state()[k]) for k, v in q.trainable_state().items())
    with pytest.raises(PolicyError, match=r"1 arm\(s\).*task sim_insert_hex has 2") as e:
        open_policy(cfg, n_arms=2)
    assert "warmup" in str(e.value)
    cfg.policy.checkpoint = ""
    with caplog.at_level("WARNING"):
        fresh = open_policy(cfg, n_arms=2)
    assert (fresh.n_arms, fresh.D, fresh.proprio_dim, fresh.version) == (2, 14, 16, 0)
    assert "FRESH" in caplog.text


def test_learner_helpers():
    """The policy's side of the learner's losses: action targets, normalised actions, bin centres, Q heads."""
    from lastr1.learner.losses import expected_action, soft_update
    from lastr1.policy import NormStats

    p = tiny_policy()
    p.set_stats(NormStats([-0.5] * 7, [0.5] * 7, [0.0] * 8, [1.0] * 8))
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (2, p.H, p.D)).astype(np.float32)
    tokens = p.action_targets(actions)
    assert tokens.shape == (2, p.H * p.D) and tokens.dtype == torch.long
    logits = torch.full((2, p.H * p.D, p.cfg.n_bins), -1e4, device=p.device)
    logits.scatter_(-1, tokens[..., None], 1e4)
    logits.requires_grad_(True)
    # π(s) = E[bin centre] is the normalised action, differentiable
    pi = expected_action(logits, p.bin_centres).view(2, p.H, p.D)
    norm = p.normalize_action(actions)
    assert (pi - norm).abs().max() <= 1 / p.cfg.n_bins + 1e-6
    pi.sum().backward()
    assert logits.grad is not None
    assert torch.allclose(p.chunk_logprob(logits.detach(), tokens), torch.zeros(2, device=p.device))
    q = p.q(torch.randn(2, p.d_act).to(p.device), pi.detach()[:, 0])  # Q reads the executed action
    assert q.shape == (p.cfg.q_ensemble, 2)
    # soft update moves targets toward the online heads by τ
    t0 = [t.clone() for t in p.q_targets.parameters()]
    with torch.no_grad():
        for w in p.q_heads.parameters():
            w.add_(1.0)
    soft_update(p.q_targets, p.q_heads, 0.25)
    for t, before, w in zip(p.q_targets.parameters(), t0, p.q_heads.parameters()):
        torch.testing.assert_close(t, 0.75 * before + 0.25 * w)
        assert not t.requires_grad
