"""LAPO's mathematics against hand computations (learner/lapo.py), and one PPO iteration on a tiny policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from policy_helpers import INSTRUCTION, frames, perturb_trainables, tiny_policy

from lastr1.configs.lapo import LapoConfig
from lastr1.learner import lapo
from lastr1.learner.rollouts import decide


def test_gae_masks_the_end_of_each_trajectory():
    r = torch.tensor([[0.0, 0.0, 5.0], [0.0, 2.0, 9.0]])
    v = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 7.0]])
    m = torch.tensor([[True, True, True], [True, True, False]])
    adv, ret = lapo.gae(r, v, m, gamma=0.5, lam=0.5)
    # By hand, γ = λ = 0.5. Row 0: δ2 = 5 − 3 = 2; δ1 = 0.5·3 − 2 = −0.5, A1 = −0.5 + 0.25·2 = 0;
    # δ0 = 0.5·2 − 1 = 0, A0 = 0. Row 1 ends at t = 1 (its t = 2 is padding): δ1 = 2 − 1 = 1 = A1;
    # δ0 = 0.5·1 − 1 = −0.5, A0 = −0.5 + 0.25·1 = −0.25.
    assert torch.allclose(adv, torch.tensor([[0.0, 0.0, 2.0], [-0.25, 1.0, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 2.0, 5.0], [0.75, 2.0, 0.0]]))


def test_whiten_uses_valid_entries_only():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    m = torch.tensor([True, True, True, False])
    s = math.sqrt(2 / 3)
    assert torch.allclose(lapo.whiten(x, m), torch.tensor([-1 / s, 0.0, 1 / s, 0.0]), atol=1e-6)


def test_latent_ratio_for_a_known_displacement():
    z_old = torch.zeros(1, 3, 2)
    z_new = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [10.0, 10.0]]])
    active = torch.tensor([[True, True, False]])  # the third latent is past the exit
    r = lapo.latent_ratio(z_old, z_new, active, sigma=10.0)
    assert r.item() == pytest.approx(math.exp(-(25 + 1) / 200))
    assert lapo.latent_ratio(z_new, z_new, torch.ones(1, 3, dtype=torch.bool), 10.0).item() == 1.0


def test_asymmetric_clip():
    r = torch.tensor([1.5, 0.5, 1.5, 0.5])
    a = torch.tensor([1.0, 1.0, -1.0, -1.0])
    # min(rA, clip(r, 0.8, 1.28)A): 1.28, 0.5, −1.5, −0.8.
    assert lapo.clipped_surrogate(r, a, 0.2, 0.28).item() == pytest.approx(-(1.28 + 0.5 - 1.5 - 0.8) / 4)
    # The high side is wider than the low side: 1.25 is inside, 0.75 is outside.
    assert lapo.clipped_surrogate(torch.tensor([1.25]), torch.tensor([1.0]), 0.2, 0.28).item() == pytest.approx(-1.25)
    assert lapo.clipped_surrogate(torch.tensor([0.75]), torch.tensor([-1.0]), 0.2, 0.28).item() == pytest.approx(0.8)


def test_clipped_value_loss():
    v, v_old, ret = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([2.0, 0.0])
    # Sample 0: max((1 − 2)², (0.7 − 2)²) = 1.69; sample 1: max(0², (0.3 − 0)²) = 0.09.
    assert lapo.value_loss(v, v_old, ret, 0.2).item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)


def test_loss_weights():
    c = LapoConfig()
    assert (c.action_weight, c.exit_weight, c.latent_weight) == (56.0, 1.0, 0.1)
    got = lapo.policy_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), 56.0, 1.0, 0.1)
    assert got.item() == pytest.approx((56 * 1 + 2) / 57 + 0.3)


def _terms(action_logp, exit_logp, z, value):
    active = torch.ones(z.shape[:2], dtype=torch.bool)
    return lapo.Terms(torch.tensor(action_logp), torch.tensor(exit_logp), z, active, torch.tensor(value))


def test_decision_loss_joins_the_terms_and_action_only_drops_latent_and_exit():
    c = LapoConfig()
    z = torch.zeros(2, 2, 3)
    old = _terms([-5.0, -6.0], [-1.0, -1.2], z, [0.0, 0.0])
    new = _terms([-5.0 + math.log(1.1), -6.0], [-1.0 + math.log(2.0), -1.2], z + 1.0, [0.0, 0.0])
    adv, ret = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0])
    l_a = -(1.1 * 1 + 1 * -1) / 2
    l_e = -(1.28 * 1 + 1 * -1) / 2  # exit ratio 2 clipped at 1.28
    r_z = math.exp(-6 / 200)  # 2 active latents × 3 dims, each displaced by 1
    l_z = -(r_z * 1 + r_z * -1) / 2
    loss, parts = lapo.decision_loss(new, old, adv, ret, c, "adaptive")
    assert parts["action"] == pytest.approx(l_a) and parts["exit"] == pytest.approx(l_e)
    assert parts["latent"] == pytest.approx(l_z, abs=1e-7)
    assert loss.item() == pytest.approx((56 * l_a + l_e) / 57 + 0.1 * l_z)
    loss_off, parts_off = lapo.decision_loss(new, old, adv, ret, c, "off")
    assert loss_off.item() == pytest.approx(l_a) and parts_off["exit"] == parts_off["latent"] == 0.0


def _batch(policy, n_traj=3, per=2, seed=0):
    torch.manual_seed(seed)
    trajs = []
    for i in range(n_traj):
        t = []
        for j in range(per):
            f = frames(10 * i + j)
            d, _ = decide(policy, f, f["proprio"], INSTRUCTION, 1.0)
            t.append(d)
        trajs.append(t)
    return trajs


def test_ratios_are_one_at_the_old_policy_and_match_the_rollout():
    torch.manual_seed(0)
    policy = tiny_policy()
    perturb_trainables(policy, seed=1)
    ds = [d for t in _batch(policy) for d in t]
    assert any(d.latent_len < policy.L_max for d in ds) or len({d.latent_len for d in ds}) > 1
    with torch.no_grad():
        old = lapo.terms(policy, ds, 1.0, INSTRUCTION)
        new = lapo.terms(policy, ds, 1.0, INSTRUCTION)
    # The teacher-forced pass scores the sampled chunk and exit as the rollout's cached pass did (the exit needs
    # the whole latent chain: the later candidates' logits read the dropped groups).
    assert np.allclose(old.action_logp.cpu().numpy(), [d.rollout_logprob for d in ds], atol=1e-3)
    assert np.allclose(old.exit_logp.cpu().numpy(), [d.rollout_exit_logprob for d in ds], atol=1e-3)
    assert torch.allclose(torch.exp(new.action_logp - old.action_logp), torch.ones(len(ds)))
    assert torch.allclose(torch.exp(new.exit_logp - old.exit_logp), torch.ones(len(ds)))
    assert torch.allclose(lapo.latent_ratio(old.latents, new.latents, old.active, 10.0), torch.ones(len(ds)))


def test_one_ppo_iteration_lowers_the_surrogate_loss():
    torch.manual_seed(0)
    policy = tiny_policy()
    perturb_trainables(policy, seed=1)
    trajs = _batch(policy, n_traj=4, per=2)
    rewards = [[0.0, 5.0], [0.0, 0.0], [0.0, 5.0], [0.0, 0.0]]
    c = LapoConfig(mini_batch=4, epochs=4, lr=1e-3, value_lr=1e-3)
    ds = [d for t in trajs for d in t]
    old = lapo.old_terms(policy, ds, c.temperature, INSTRUCTION, 8)
    adv, ret = lapo.advantages(trajs, rewards, old.value, c)
    before, _ = lapo.decision_loss(old, old, adv, ret, c, "adaptive")
    opt = lapo.make_optimizer(policy, c)
    stats = lapo.ppo_iteration(policy, opt, trajs, rewards, c, INSTRUCTION, torch.Generator().manual_seed(0))
    assert stats["grad_norm"] > 0
    with torch.no_grad():
        after, _ = lapo.decision_loss(lapo.terms(policy, ds, c.temperature, INSTRUCTION), old, adv, ret, c, "adaptive")
    assert after.item() < before.item() - 1e-3


def test_a_mini_batch_is_whole_trajectories_and_micro_batches_only_split_the_pass():
    """One optimizer step per `mini_batch` trajectories (the paper's 128 of 512), whatever their decisions;
    accumulating over passes of 1 decision gives the gradient one pass over all of them gives."""
    torch.manual_seed(0)
    policy = tiny_policy()
    perturb_trainables(policy, seed=1)
    trajs = _batch(policy, n_traj=5, per=3)
    rewards = [[0.0, 0.0, 5.0 * (i % 2)] for i in range(5)]
    c = LapoConfig(mini_batch=2, micro_batch=1, epochs=2, lr=1e-3, value_lr=1e-3)
    opt = lapo.make_optimizer(policy, c)
    lapo.ppo_iteration(policy, opt, trajs, rewards, c, INSTRUCTION, torch.Generator().manual_seed(0))
    assert {int(st["step"]) for st in opt.state.values()} == {2 * 3}  # 2 epochs × ⌈5 / 2⌉, not × 15 decisions
    grads = {}
    for micro in (1, 16):  # one mini-batch of all five, lr 0: the gradient it leaves behind
        c = LapoConfig(mini_batch=5, micro_batch=micro, epochs=1, lr=0.0, value_lr=0.0)
        lapo.ppo_iteration(policy, lapo.make_optimizer(policy, c), trajs, rewards, c, INSTRUCTION)
        grads[micro] = [t.grad.clone() for t in policy.trainable_parameters() if t.grad is not None]
    assert len(grads[1]) == len(grads[16]) > 0 and any(g.abs().sum() > 0 for g in grads[16])
    for a, b in zip(grads[1], grads[16]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_ray_workers_without_ray_say_which_extra_and_local_ones_never_import_it(monkeypatch, tmp_path):
    import subprocess
    import sys

    from lastr1 import configs
    from lastr1.errors import MissingDependency
    from lastr1.learner.rollouts import Rollouts

    cfg = configs.load("sim_insert_hex", ["--robot.kind", "lockstep", "--run_dir", str(tmp_path),
                                          "--learner.lapo.ray_address", "auto"])
    monkeypatch.setitem(sys.modules, "ray", None)  # a learner box without the [ray] extra
    with pytest.raises(MissingDependency, match=r"(?s)lastr1 lapo --address.*pip install 'lastr1\[ray\]'"):
        Rollouts(cfg, tiny_policy())
    # The local path (processes) imports nothing of Ray.
    code = ("import sys; import lastr1.learner.cli, lastr1.learner.lapo_run, lastr1.learner.rollouts; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lapo_address_sets_the_ray_address(monkeypatch):
    from lastr1 import cli
    from lastr1.learner import lapo_run

    got = []
    monkeypatch.setattr(lapo_run, "run_lapo", lambda cfg, out, iterations, video: got.append(cfg) or {
        "evals": {}, "latent_lengths": {}, "steps_per_s": 0.0})
    base = ["lapo", "--config", "sim_insert_hex", "--robot.kind", "lockstep", "--no-video"]
    assert cli.main(base) == 0 and got[-1].learner.lapo.ray_address == ""
    assert cli.main([*base, "--address", "ray://head:10001"]) == 0
    assert got[-1].learner.lapo.ray_address == "ray://head:10001"
    assert cli.main([*base, "--learner.lapo.ray_address", "auto"]) == 0 and got[-1].learner.lapo.ray_address == "auto"
