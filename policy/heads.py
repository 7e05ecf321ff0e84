"""The small heads on top of the towers: the Q ensemble (critic) and the value head."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ValueHead(nn.Module):
    """d → 512 → 256 → 128 → 1 on the chosen <latent_end> hidden state (the authors' code; last layer
    N(0, 0.02) with zero bias so the first value estimates start near 0)."""

    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, 1),
        )
        nn.init.normal_(self.net[-1].weight, std=0.02)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(-1)


def _q_mlp(d_in: int, hidden: int) -> nn.Sequential:
    # LayerNorm in critic MLPs keeps Q from blowing up on few data (as in SERL/HIL-SERL's critics).
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
        nn.Linear(hidden, 1),
    )


class QEnsemble(nn.Module):
    """`n` independent 4-layer MLPs Q(s, a) on [readout feature (F); normalised action chunk (H·D)]."""

    def __init__(self, feature_dim: int, action_numel: int, hidden: int = 256, n: int = 2):
        super().__init__()
        self.action_numel, self.n = action_numel, n
        self.heads = nn.ModuleList(_q_mlp(feature_dim + action_numel, hidden) for _ in range(n))

    def forward(self, feature: torch.Tensor, action_norm: torch.Tensor) -> torch.Tensor:
        """feature (B, F), action_norm (B, H, D) or (B, H·D) in [-1, 1] → Q values (n, B)."""
        x = torch.cat([feature, action_norm.reshape(len(action_norm), self.action_numel)], dim=-1)
        return torch.stack([h(x).squeeze(-1) for h in self.heads])

    def frozen_copy(self) -> QEnsemble:
        target = copy.deepcopy(self)
        target.requires_grad_(False)
        return target
