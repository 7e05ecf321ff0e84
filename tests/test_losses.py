import torch

from lastr1.learner.losses import (
    RunningScale,
    actor_loss,
    advantage_weights,
    bc_loss,
    critic_loss,
    expected_action,
    soft_update,
    td_target,
)


def test_td_target_by_hand():
    r = torch.tensor([1.0, -0.05, 10.0])
    terminated = torch.tensor([False, False, True])
    q_next = torch.tensor([[2.0, 4.0, 100.0], [3.0, 1.0, 50.0]])
    y = td_target(r, terminated, q_next, gamma=0.9)
    # min over the ensemble: [2, 1, 50]; the terminated row does not bootstrap
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 2.0, -0.05 + 0.9 * 1.0, 10.0]))


def test_truncation_still_bootstraps():
    # Only `terminated` zeroes the bootstrap; a truncated step passes terminated=False.
    y = td_target(torch.tensor([0.0]), torch.tensor([False]), torch.tensor([[5.0], [7.0]]), 0.5)
    assert float(y) == 2.5


def test_critic_loss_by_hand():
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]], requires_grad=True)
    y = torch.tensor([1.0, 3.0])
    loss = critic_loss(q, y)
    # head 0: (0 + 1)/2 = 0.5; head 1: (1 + 1)/2 = 1.0
    assert abs(float(loss) - 1.5) < 1e-6
    loss.backward()
    torch.testing.assert_close(q.grad, torch.tensor([[0.0, -1.0], [-1.0, 1.0]]))


def test_soft_update_by_hand():
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(1.0), target.weight.fill_(0.0), target.bias.fill_(-1.0)
    soft_update(target, online, tau=0.25)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.25))
    torch.testing.assert_close(target.bias, torch.tensor([-0.5]))


def test_expected_action_is_differentiable_and_exact_for_peaked_logits():
    centres = torch.linspace(-1, 1, 5)
    logits = torch.full((1, 2, 5), -1e4)
    logits[0, 0, 4] = 0.0
    logits[0, 1, 1] = 0.0
    torch.testing.assert_close(expected_action(logits, centres), torch.tensor([[1.0, -0.5]]))
    lg = torch.zeros(1, 1, 5, requires_grad=True)
    expected_action(lg, centres).sum().backward()
    assert lg.grad.abs().sum() > 0


def test_bc_only_on_masked_rows_and_actor_loss_combines():
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    tokens = torch.tensor([[0, 1, 2], [3, 3, 3]])
    mask = torch.tensor([True, False])
    bc = bc_loss(logits, tokens, mask)
    torch.testing.assert_close(bc, torch.log(torch.tensor(4.0)))
    bc.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    w = torch.tensor([2.0, 0.0])
    loss, info = actor_loss(torch.zeros(2, 3, 4), tokens, mask, w, executed=1, beta=2.0, eta=0.5)
    # BC: log 4 on row 0; AW: mean(2·log 4, 0·log 4) = log 4
    torch.testing.assert_close(loss, 2.0 * torch.log(torch.tensor(4.0)) + 0.5 * torch.log(torch.tensor(4.0)))
    assert abs(info["awr"] - float(torch.log(torch.tensor(4.0)))) < 1e-6


def test_aw_term_reads_only_the_executed_tokens():
    """Defect 2 (actor side): only the executed step's tokens have an outcome; the rest get no gradient."""
    logits = torch.zeros(1, 6, 4, requires_grad=True)
    loss, _ = actor_loss(logits, torch.zeros(1, 6, dtype=torch.long), torch.tensor([False]), torch.ones(1),
                         executed=2, beta=1.0, eta=1.0)
    loss.backward()
    assert logits.grad[0, :2].abs().sum() > 0 and logits.grad[0, 2:].abs().sum() == 0


def _extreme_mass(objective: str, steps: int = 300, bc: float = 1.0, eta: float = 1.0) -> tuple[float, int]:
    """One token, 64 bins, a demo at bin 32, a critic whose Q rises with the action (Q = 3a, as the sim's
    critic roughly does along its push direction). Returns the mass on the top bin and the argmax after
    `steps` Adam steps of CE(demo) + the Q term of `objective`."""
    torch.manual_seed(0)
    k = 64
    centres = -1 + (2 * torch.arange(k) + 1) / k
    logits = torch.zeros(1, 1, k, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    demo = torch.tensor([[32]])
    scale = RunningScale()
    for _ in range(steps):
        if objective == "expected":  # the replaced objective: −η Q(E[bin centre]) / |Q|
            q = 3.0 * expected_action(logits, centres)
            q_term = q.mean() / q.abs().mean().detach().clamp_min(1e-3)
            loss = bc * bc_loss(logits, demo, torch.tensor([True])) - eta * q_term
        else:  # executed actions near the demo (exploration ±3 bins), weighted by their advantage
            executed = torch.randint(29, 36, (16, 1))
            q_a = 3.0 * centres[executed[:, 0]]
            adv = q_a - 3.0 * centres[logits.detach()[0, 0].argmax()]
            w = advantage_weights(adv, scale.update(adv), 1.0, 20.0)
            loss = bc * bc_loss(logits, demo, torch.tensor([True]))
            aw, _ = actor_loss(logits.expand(16, 1, k), executed, torch.zeros(16, dtype=torch.bool), w, 1, 0.0, eta)
            loss = loss + aw
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = logits.detach()[0, 0].softmax(-1)
    return float(p[-1]), int(p.argmax())


def test_q_push_on_the_expected_bin_ran_to_the_extreme_bin_but_awr_stays_on_executed_actions():
    """Defect 3: on rollout rows (no BC) maximising Q at the *expected* bin centre collapses the token onto
    the extreme bin, an action nobody executed; the advantage-weighted CE moves the argmax to the best of
    the executed actions and leaves the extreme bin empty."""
    mass, argmax = _extreme_mass("expected", bc=0.0)
    assert argmax == 63, (mass, argmax)
    mass, argmax = _extreme_mass("awr", bc=0.0)
    assert 32 < argmax <= 35 and mass < 0.005, (mass, argmax)


def test_advantage_scale_is_a_running_rms_not_a_batch_mean():
    """Defect 3: one near-constant 4-row batch must not set the step size: the scale moves by ~1 % per batch."""
    s = RunningScale(decay=0.99)
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        s.update(torch.randn(4, generator=g) * 2.0)
    assert abs(s.value - 2.0) < 0.3
    before = s.value
    s.update(torch.full((4,), 1e-4))
    assert s.value > 0.99 * before
    w = advantage_weights(torch.tensor([1e-4, -1e-4, 100.0]), s.value, 1.0, 20.0)
    assert abs(float(w[0]) - 1.0) < 1e-3 and float(w[2]) == 20.0  # tiny advantages: ~1; clipped at w_max
