"""The BC + Q objective of the learner, on one screen (docs/learning.md says why each piece is as it is).

Symbols as in the paper and in HIL-SERL/ConRFT, which D.4 builds on:
  Q_j, Q̄_j   online and target critics (an ensemble of J heads) on the *executed* action a_t (D numbers):
             every transition's chunk starts with the action the robot executed at that step, and the reward
             and s′ of a transition are those of that one step, so the rest of the chunk has no outcome
  y          one-step TD target  r + γ (1 − terminated) min_j Q̄_j(s′, π(s′))
  π(s′)      the greedy executed action at s′: the argmax bin of each of its first D tokens
  A(s, a)    min_j Q_j(s, a) − min_j Q_j(s, π(s)): how much better the executed action was than the policy's own
  L_critic = Σ_j mean (Q_j(s, a) − y)²
  L_actor  = β · CE(logits, a_demo) [demo/intervention rows]
           + η · mean_B w · CE(logits[executed step], a_t),   w = min(exp(A / (λ · σ_A)), w_max)   [AWAC/CRR]
Truncation is not termination: a time-limit end still bootstraps from s′.
The improvement term only re-weights the likelihood of actions that were executed, so it cannot move
probability to bins nobody tried (the expected-bin-centre Q push it replaces sent ~26 % of the mass to the
extreme bin while the argmax stayed put); σ_A is a running RMS of the advantages, not a 4-row mean.
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
    """E_softmax(logits)[bin centre] for every token; (B, N, K) → (B, N)."""
    return (logits.softmax(dim=-1) * bin_centres).sum(dim=-1)


def greedy_action(logits: torch.Tensor, bin_centres: torch.Tensor) -> torch.Tensor:
    """The bin centre of each token's argmax, what the robot executes in evaluation; (B, N, K) → (B, N)."""
    return bin_centres[logits.argmax(dim=-1)]


def bc_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the human/demo action tokens, over the rows where `mask` (B,) is true."""
    if not bool(mask.any()):
        return logits.sum() * 0.0
    lg, tk = logits[mask], tokens[mask]
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tk.reshape(-1))


class RunningScale:
    """An exponential moving RMS: the advantage scale over many micro-batches, so one batch of 4 rows with
    near-equal Q cannot blow the weights up (nor one outlier batch flatten them)."""

    def __init__(self, decay: float = 0.99, init: float = 1.0):
        self.decay, self.sq = decay, init * init

    def update(self, x: torch.Tensor) -> float:
        self.sq = self.decay * self.sq + (1 - self.decay) * float((x.detach() ** 2).mean())
        return self.value

    @property
    def value(self) -> float:
        return max(self.sq, 1e-12) ** 0.5


def advantage_weights(adv: torch.Tensor, scale: float, temperature: float, w_max: float) -> torch.Tensor:
    """w = min(exp(A / (λ σ)), w_max), no gradient (AWAC/CRR's exponential filter)."""
    return torch.exp(adv.detach() / (temperature * max(scale, 1e-6))).clamp(max=w_max)


def actor_loss(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    demo_mask: torch.Tensor,
    weights: torch.Tensor,
    executed: int,
    beta: float,
    eta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """β·CE on demo/intervention rows + η·mean_B w·CE on every row's executed step (its first `executed` tokens).
    `tokens` (B, H·D) are each row's chunk tokens; `weights` (B,) from `advantage_weights`."""
    l_bc = bc_loss(logits, tokens, demo_mask)
    lg, tk = logits[:, :executed], tokens[:, :executed]
    ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tk.reshape(-1), reduction="none").view(len(lg), -1).mean(1)
    l_aw = (weights * ce).mean()
    loss = beta * l_bc + eta * l_aw
    return loss, {"bc": float(l_bc.detach()), "awr": float(l_aw.detach()), "w_mean": float(weights.mean())}


@torch.no_grad()
def soft_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)
