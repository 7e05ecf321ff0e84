"""The BC + Q objective of LaST-R1's real-world stage (appendix D.4), on one screen.

Symbols as in the paper and in HIL-SERL/ConRFT, which D.4 builds on:
  Q_j, Q̄_j   online and target critics (an ensemble of J = 2 heads)
  y          one-step TD target  r + γ (1 − terminated) min_j Q̄_j(s′, π(s′))
  π(s)       the acting tower's chunk made differentiable: the expectation of the bin centres under the
             softmax of its action-token logits
  L_critic = Σ_j mean (Q_j(s, a) − y)²
  L_actor  = β · CE(logits, a_demo)  −  η · mean_B min_j Q_j(s, π(s)) / mean_B |min_j Q_j(s, π(s))|
Truncation is not termination: a time-limit end still bootstraps from s′.
The Q term is divided by its own (stopped) magnitude, as TD3+BC does: Q's scale follows the rewards (a
+10 success makes |Q| ~ 5–10) and drifts while the critic learns, and without the division that term
outgrew BC and undid the warm-up within minutes (measured: 30 % → 0 % held-out in a 6-minute loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def td_target(r: torch.Tensor, terminated: torch.Tensor, q_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) min_j Q̄_j(s′, π(s′)); `q_next` is (J, B) from the target heads."""
    return r + gamma * (1.0 - terminated.float()) * q_next.min(dim=0).values


def critic_loss(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_j mean_B (Q_j(s, a) − y)²; `q` is (J, B), `y` (B,) carries no gradient."""
    return ((q - y.detach().unsqueeze(0)) ** 2).mean(dim=1).sum()


def expected_action(logits: torch.Tensor, bin_centres: torch.Tensor) -> torch.Tensor:
    """π(s) as a differentiable chunk: E_softmax(logits)[bin centre] for every token; (B, N, K) → (B, N)."""
    return (logits.softmax(dim=-1) * bin_centres).sum(dim=-1)


def bc_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the human/demo action tokens, over the rows where `mask` (B,) is true."""
    if not bool(mask.any()):
        return logits.sum() * 0.0
    lg, tk = logits[mask], tokens[mask]
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tk.reshape(-1))


def actor_loss(
    logits: torch.Tensor,
    demo_tokens: torch.Tensor,
    demo_mask: torch.Tensor,
    q_pi: torch.Tensor,
    beta: float,
    eta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """β·BC + η·(−Q(s, π(s)) / |Q|); `q_pi` (J, B) from critics whose own parameters are not stepped here,
    on state features that carry no gradient (the actor improves Q through its action, not by moving the
    features Q reads)."""
    l_bc = bc_loss(logits, demo_tokens, demo_mask)
    q = q_pi.min(dim=0).values
    scale = q.abs().mean().detach().clamp_min(1e-3)
    loss = beta * l_bc - eta * q.mean() / scale
    return loss, {"bc": float(l_bc.detach()), "q_pi": float(q.mean().detach())}


@torch.no_grad()
def soft_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)
