"""The memory and speed switches change how the towers compute, never what: each against the eager path on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import batch_from, frames, perturb_trainables, tiny_policy


@pytest.mark.parametrize("acting", ["expert", "shared"])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(acting):
    """Recomputing each layer in the backward pass is the same arithmetic on CPU: equal to float32 rounding
    (atol 1e-6), and it keeps fewer tensors for the backward pass."""
    policy = tiny_policy(acting=acting)
    perturb_trainables(policy)
    obs = [frames(i) for i in range(3)]
    rng = np.random.default_rng(0)
    batch = batch_from(obs, torch.from_numpy(rng.normal(size=(3, policy.L_max, policy.d)).astype(np.float32)),
                       [2, 4, 8])
    results = []
    for on in (False, True):
        policy.cfg.grad_checkpointing = on
        policy.zero_grad(set_to_none=True)
        saved: list[int] = []

        def pack(t, saved=saved):  # counts what autograd keeps for the backward pass
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = policy.forward_train(batch)
        loss = out.action_logits.float().logsumexp(-1).mean() + out.pred_latents.pow(2).mean() + out.value.mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        results.append((out, grads, sum(saved)))
    (eager, g_eager, n_eager), (ckpt, g_ckpt, n_ckpt) = results
    torch.testing.assert_close(ckpt.action_logits, eager.action_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(ckpt.pred_latents, eager.pred_latents, atol=1e-6, rtol=0)
    assert g_eager.keys() == g_ckpt.keys() and any("lora" in n for n in g_eager)
    for n in g_eager:
        torch.testing.assert_close(g_ckpt[n], g_eager[n], atol=1e-6, rtol=1e-5, msg=n)
    assert n_ckpt < n_eager / 2


def test_memory_plan_counts_parameters_and_extrapolates_activations_exactly():
    """policy/memory.py's figures against the policy itself: parameter count of a real build, and the 1→2
    layer extrapolation of saved activations against a direct measurement at 3 layers (the D.4 micro-batch)."""
    from policy_helpers import tiny_cfg

    from lastr1.policy import TrainBatch, build_policy, memory

    cfg = tiny_cfg()
    cfg.tiny.layers = 3
    policy = build_policy(cfg, n_arms=1)
    c = memory.count(cfg)
    assert c.frozen + c.trainable + c.q_targets_bytes // 4 == sum(p.numel() for p in policy.parameters())
    assert c.trainable == sum(p.numel() for p in policy.trainable_parameters())
    rng = np.random.default_rng(0)
    img = {k: rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8) for k in ("front", "wrist")}
    batch = TrainBatch(slow_images=img, instructions=["insert the hexagon block into the slot"] * 4, fast_images=img,
                       proprio=np.zeros((4, 8), np.float32), latents=torch.zeros(4, policy.L_max, policy.d),
                       latent_len=np.full(4, policy.L_max))
    weights = {p.untyped_storage().data_ptr() for p in policy.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy.forward_train(batch)
    assert memory.activation_bytes(cfg, 4, (128, 128)) == pytest.approx(sum(seen.values()), rel=0.01)
    assert memory.activation_bytes(cfg, 4, (128, 128), checkpointing=True) < sum(seen.values()) / 2


def test_compiled_acting_pass_matches_eager():
    """policy.compile_acting: the same chunk as the eager path — equal tokens, logits within 1e-5 (the
    compiler may reorder float32 sums) — and a hot-reloaded adapter reaches the compiled graph."""
    from policy_helpers import INSTRUCTION

    eager, compiled = tiny_policy(), tiny_policy(compile_acting=True)
    perturb_trainables(eager)
    compiled.load_state_dict(eager.state_dict())
    obs = frames(3)
    prefix = eager.reason({"front": obs["front"]}, INSTRUCTION)
    a = eager.act(prefix, {"wrist": obs["wrist"]}, obs["proprio"])
    b = compiled.act(prefix, {"wrist": obs["wrist"]}, obs["proprio"])
    assert np.array_equal(a.tokens, b.tokens) and abs(a.logprob - b.logprob) < 1e-4
    torch.testing.assert_close(b.feature, a.feature, atol=1e-5, rtol=0)
    perturb_trainables(eager, seed=1)
    compiled.swap(eager.trainable_state(), 2)
    a = eager.act(prefix, {"wrist": obs["wrist"]}, obs["proprio"])
    b = compiled.act(prefix, {"wrist": obs["wrist"]}, obs["proprio"])
    assert np.array_equal(a.tokens, b.tokens) and b.version == 2
    torch.testing.assert_close(b.feature, a.feature, atol=1e-5, rtol=0)
