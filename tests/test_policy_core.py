"""The dual-system policy on a tiny random Qwen3-VL: our layer loop against transformers, the cached fast
path against one joint pass, the masks, the adaptive latent exit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import INSTRUCTION, batch_from, frames, padded_latents, perturb_trainables, tiny_policy


@pytest.fixture(scope="module", params=["expert", "shared", "narrow-expert"])
def policy(request):
    from lastr1.configs.policy import ExpertConfig

    if request.param == "narrow-expert":  # its own width, same layers and KV geometry as the tower
        p = tiny_policy(acting="expert", expert=ExpertConfig(hidden_size=32, intermediate_size=64, heads=2,
                                                             init="random"))
        assert p.d_act == 32 and len(p.expert.layers) == p.cfg.tiny.layers
    else:
        p = tiny_policy(acting=request.param)
    perturb_trainables(p)
    return p


def test_reasoning_prefix_matches_transformers_forward():
    """Our loop (positions, DeepStack, attention) gives Qwen3VLModel.forward's hidden states on the prompt."""
    p = tiny_policy()
    obs = [frames(1), frames(2)]
    slow = {"front": np.stack([o["front"] for o in obs])}
    pb = p._prompt_batch(slow, ["pick", INSTRUCTION])  # different lengths: left padding
    from lastr1.policy import hf_compat, towers

    lm = hf_compat.text_model(p.vlm)
    cos, sin = p._rotary(pb.embeds, pb.positions)
    ours, _ = towers.run_stack(hf_compat.layers(lm), hf_compat.final_norm(lm), pb.embeds, cos, sin,
                               towers.causal_mask(pb.valid), None, pb.deepstack, pb.visual_mask)
    for i, ins in enumerate(["pick", INSTRUCTION]):
        prompt = p.prompts.build(ins, [(1, 8, 8)])
        ids = torch.from_numpy(prompt.ids)[None].to(p.device)
        pix, grid = p.image_processor(slow["front"][i : i + 1])
        pix, grid = pix.to(p.device), grid.to(p.device)
        mm = (ids == p.prompts.ids[hf_compat.IMAGE_PAD]).int()
        with torch.no_grad():
            ref = p.vlm(input_ids=ids, pixel_values=pix, image_grid_thw=grid, mm_token_type_ids=mm).last_hidden_state
            rope, _ = p.vlm.get_rope_index(ids, mm, grid)
        n = ids.shape[1]
        # the last slot of our prompt is <latent_start>; causal attention keeps the earlier ones comparable
        torch.testing.assert_close(ours[i, -1 - n : -1], ref[0], atol=1e-5, rtol=1e-4)
        assert torch.equal(pb.positions[:, i, -1 - n : -1], rope[:, 0])


@pytest.mark.parametrize("explore", [False, True])
def test_fast_path_over_cached_prefix_equals_one_joint_pass(policy, explore):
    torch.manual_seed(3)
    o = frames(5)
    pre = policy.reason({"front": o["front"]}, INSTRUCTION, explore=explore)
    out = policy.act(pre, {"wrist": o["wrist"]}, o["proprio"])
    with torch.no_grad():
        tr = policy.forward_train(batch_from([o], padded_latents(policy, [pre]), [pre.latent_len]))
    assert torch.equal(tr.action_logits[0].argmax(-1).view(policy.H, policy.D).cpu(), torch.from_numpy(out.tokens))
    torch.testing.assert_close(tr.feature[0], out.feature, atol=1e-5, rtol=1e-4)
    # the latents fed back step by step are what the joint pass predicts at every used slot
    torch.testing.assert_close(tr.pred_latents[0, : pre.latent_len], pre.latents, atol=1e-5, rtol=1e-4)
    n = pre.latent_len // policy.G  # later groups saw padded latents in the joint pass
    torch.testing.assert_close(tr.exit_logits[0, :n], pre.exit_logits[:n], atol=1e-5, rtol=1e-4)
    assert abs(float(tr.value[0]) - pre.value) < 1e-5
    # and the cached path's chunk log-prob is the joint pass's sum over the H·D tokens
    lp = policy.chunk_logprob(tr.action_logits, torch.from_numpy(out.tokens).view(1, -1).to(policy.device))
    assert abs(float(lp[0]) - out.logprob) < 1e-3


def test_fast_path_reuses_prefix_and_reads_fast_inputs(policy):
    o, o2 = frames(7), frames(8)
    pre = policy.reason({"front": o["front"]}, INSTRUCTION)
    kv_before = [k.clone() for k, _ in pre.kv]
    a = policy.act(pre, {"wrist": o["wrist"]}, o["proprio"])
    b = policy.act(pre, {"wrist": o["wrist"]}, o["proprio"])
    c = policy.act(pre, {"wrist": o2["wrist"]}, o2["proprio"])
    assert np.array_equal(a.tokens, b.tokens) and a.logprob == b.logprob  # the cache is not mutated by act
    assert all(torch.equal(k, kb) for (k, _), kb in zip(pre.kv, kv_before))
    assert not torch.equal(a.feature, c.feature)  # new wrist image + proprio reach the acting tower
    other = policy.reason({"front": o2["front"]}, "open the drawer")
    d = policy.act(other, {"wrist": o["wrist"]}, o["proprio"])
    assert not torch.equal(a.feature, d.feature)  # and so does the reasoning prefix


def test_prefix_cannot_see_the_acting_block(policy):
    o, o2 = frames(11), frames(12)
    o2 = dict(o2, front=o["front"])  # same slow input, different fast inputs
    pre = policy.reason({"front": o["front"]}, INSTRUCTION)
    z = padded_latents(policy, [pre, pre])
    with torch.no_grad():
        tr = policy.forward_train(batch_from([o, o2], z, [pre.latent_len] * 2))
    assert not torch.allclose(tr.action_logits[0], tr.action_logits[1])
    for name in ("pred_latents", "exit_logits", "value"):
        a, b = getattr(tr, name)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_action_block_is_bidirectional(policy):
    """Each placeholder's logits depend on the others, the first on the last included (not causal)."""
    o = frames(13)
    pre = policy.reason({"front": o["front"]}, INSTRUCTION)
    from lastr1.policy import towers

    toks, segs = policy._fast_inputs({"wrist": o["wrist"][None]}, o["proprio"][None])
    x, pos = policy._acting_inputs(toks, segs, torch.tensor([pre.act_pos], device=policy.device))
    x = x.detach().requires_grad_(True)
    cos, sin = policy._rotary(x, pos)
    s = pre.kv[0][0].shape[2]
    mask = towers.acting_mask(torch.ones(1, s, dtype=torch.bool), toks.shape[1], policy.H * policy.D)
    h, _ = towers.run_stack(*policy._act_stack(), x, cos, sin, mask, pre.kv)
    logits, _ = policy._heads(h, toks.shape[1])
    n_fast = toks.shape[1]
    first_on_last = torch.autograd.grad(logits[0, 0].sum(), x, retain_graph=True)[0][0, -1]
    last_on_first = torch.autograd.grad(logits[0, -1].sum(), x, retain_graph=True)[0][0, n_fast]
    assert first_on_last.abs().sum() > 0 and last_on_first.abs().sum() > 0
    # fast-input tokens do not read the placeholders
    fast_on_actions = torch.autograd.grad(h[0, :n_fast].sum(), x)[0][0, n_fast:]
    assert fast_on_actions.abs().sum() == 0
    m = towers.acting_mask(torch.tensor([[True, False, True]]), 2, 3)[0, 0]
    assert m[:, 1].sum() == 0 and m[2:, 3:].all() and not m[:2, 5:].any()


class _ScriptedExit(torch.nn.Module):
    """Stands in for the exit head: the g-th call returns logits[g]."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.calls = logits, 0

    def forward(self, h):
        v = self.logits[self.calls]
        self.calls += 1
        return torch.tensor([float(v)])


@pytest.mark.parametrize(
    "logits, threshold, length, computed",
    [
        ([9.0, 9.0, 9.0, 9.0], 0.99, 2, 1),  # confident at the first candidate: exit at 2, nothing more computed
        ([-3.0, 2.0, 6.0, 9.0], 0.99, 6, 3),  # first candidate with σ ≥ 0.99 is the third
        ([-3.0, 2.0, 6.0, 9.0], 0.999, 8, 4),  # τ higher: the fourth (σ(9) = 0.9999)
        ([-3.0, 2.5, 1.0, 0.0], 0.99, 4, 4),  # none passes: the most probable candidate
    ],
)
def test_greedy_exit_follows_threshold(logits, threshold, length, computed):
    p = tiny_policy(exit_threshold=threshold)
    p.exit_head = _ScriptedExit(logits)
    front = frames(0)["front"]
    pre = p.reason({"front": front}, INSTRUCTION, explore=False)
    assert pre.latent_len == length and len(pre.exit_logits) == computed
    assert pre.latents.shape == (length, p.d)
    # the cache holds the prompt + exactly the used groups (G latents + <latent_end> each)
    n_prompt = p._prompt_batch({"front": front[None]}, [INSTRUCTION]).embeds.shape[1]
    assert pre.kv[0][0].shape[2] == n_prompt + (length // p.G) * (p.G + 1)


def test_explore_samples_across_candidates_from_tempered_softmax():
    from lastr1.policy.model import choose_exit

    logits = torch.tensor([0.0, 1.0, 2.0, 3.0])
    torch.manual_seed(0)
    n = 4000
    draws = [choose_exit(logits, True, 0.99, 1.6) for _ in range(n)]
    freq = np.bincount([g for g, _ in draws], minlength=4) / n
    probs = torch.softmax(logits / 1.6, 0).numpy()
    assert np.abs(freq - probs).max() < 0.03, (freq, probs)
    for g, lp in draws[:20]:
        assert abs(lp - float(torch.log_softmax(logits / 1.6, 0)[g])) < 1e-6


def test_explore_in_reason_computes_every_candidate():
    p = tiny_policy(exit_temperature=1.6)
    torch.manual_seed(1)
    seen = set()
    for _ in range(8):
        p.exit_head = _ScriptedExit([0.0, 0.0, 0.0, 0.0])
        pre = p.reason({"front": frames(0)["front"]}, INSTRUCTION, explore=True)
        assert len(pre.exit_logits) == 4 and pre.latent_len in (2, 4, 6, 8)
        assert abs(pre.exit_logprob - np.log(0.25)) < 1e-6
        seen.add(pre.latent_len)
    assert len(seen) >= 2  # 8 uniform draws over 4 lengths: all equal has probability 4·4^-8


def test_bad_inputs_are_named():
    from lastr1.policy import PolicyError

    p = tiny_policy()
    o = frames(0)
    with pytest.raises(PolicyError, match="missing camera"):
        p.reason({"wrist": o["wrist"]}, INSTRUCTION)
    pre = p.reason({"front": o["front"]}, INSTRUCTION)
    with pytest.raises(PolicyError, match="NaN"):
        p.act(pre, {"wrist": o["wrist"]}, np.full(8, np.nan))
    with pytest.raises(PolicyError, match="uint8"):
        p.act(pre, {"wrist": o["wrist"].astype(np.float32)}, o["proprio"])
    with pytest.raises(PolicyError, match="latent_len"):
        p.forward_train(batch_from([o], torch.zeros(1, 8, p.d), [3]))


@pytest.mark.parametrize("mode", ["fixed", "off"])
def test_ablation_modes_fast_path_matches_joint_pass(mode):
    """The paper's baselines (Fig. 3/4): a fixed latent length and Action-Only. The cached fast path still
    equals the training pass, and what the acting tower can see is what the mode says."""
    p = tiny_policy(latent_mode=mode)
    perturb_trainables(p)
    torch.manual_seed(0)
    o = frames(7)
    for explore in (False, True):
        pre = p.reason({"front": o["front"]}, INSTRUCTION, explore=explore)
        assert pre.latent_len == (p.L_max if mode == "fixed" else 0)
    out = p.act(pre, {"wrist": o["wrist"]}, o["proprio"])
    z = padded_latents(p, [pre]) if mode == "fixed" else torch.zeros(1, p.L_max, p.d)
    with torch.no_grad():
        tr = p.forward_train(batch_from([o], z, [pre.latent_len]))
        other = p.forward_train(batch_from([o], torch.randn(1, p.L_max, p.d) * 5, [p.G]))
    assert torch.equal(tr.action_logits[0].argmax(-1).view(p.H, p.D).cpu(), torch.from_numpy(out.tokens))
    torch.testing.assert_close(tr.feature[0], out.feature, atol=1e-5, rtol=1e-4)
    assert abs(float(tr.value[0]) - pre.value) < 1e-5
    if mode == "off":  # the acting block never sees the latent slots, whatever they hold
        torch.testing.assert_close(other.action_logits, tr.action_logits)
    else:  # the given length is overridden by L_max, and the latents matter
        assert not torch.allclose(other.action_logits, tr.action_logits, atol=1e-4)
