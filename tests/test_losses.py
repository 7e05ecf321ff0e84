import torch

from lastr1.learner.losses import actor_loss, bc_loss, critic_loss, expected_action, soft_update, td_target


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
    q_pi = torch.tensor([[1.0, 3.0], [2.0, 1.0]])
    loss, info = actor_loss(torch.zeros(2, 3, 4), tokens, mask, q_pi, beta=2.0, eta=0.5)
    # min_j Q = [1, 1] → mean 1, divided by mean |Q| = 1
    torch.testing.assert_close(loss, 2.0 * torch.log(torch.tensor(4.0)) - 0.5 * 1.0)
    assert info["q_pi"] == 1.0
    empty, _ = actor_loss(torch.zeros(2, 3, 4), tokens, torch.tensor([False, False]), q_pi, 1.0, 1.0)
    assert float(empty) == -1.0


def test_q_term_is_scale_free_but_its_gradient_follows_q():
    """Q ×100 (bigger rewards) leaves the actor's loss and its pull unchanged; the gradient still points up Q."""
    tokens, mask = torch.zeros(2, 3, dtype=torch.long), torch.tensor([False, False])
    grads = []
    for k in (1.0, 100.0):
        a = torch.tensor([0.2, -0.4], requires_grad=True)
        q_pi = k * torch.stack([3.0 * a + 1.0, 2.0 * a + 2.0])  # (J=2, B=2): min is the second head here
        loss, _ = actor_loss(torch.zeros(2, 3, 4), tokens, mask, q_pi, beta=1.0, eta=1.0)
        loss.backward()
        grads.append(a.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert (grads[0] < 0).all()  # descending the loss raises Q
