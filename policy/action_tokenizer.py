"""Actions ↔ the 256 action tokens (paper §2.2: a parameter-free tokenizer over q01/q99-normalised actions).

Robot actions (already in the robot's [-1, 1] units) are mapped per dimension by their demonstration
quantiles: q01 → -1, q99 → +1 (clipped), then cut into `n_bins` equal bins over [-1, 1]; a token decodes to
its bin centre. Unlike OpenVLA's 256-edge/255-centre quirk every one of the 256 classes is used, so the
round-trip error inside [q01, q99] is at most half a bin. Dimensions that never vary in the demonstrations
(q99 − q01 tiny) pass through unscaled instead of dividing by ~0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from lastr1.policy.errors import PolicyError

_MIN_RANGE = 1e-4
# Proprio z-scores: a dimension the demonstrations held constant (the gripper width, a quaternion component)
# has std ~0, and a floor of 1e-6 made a 1 mm change z = 1000. The floor is in robot units (metres, unit
# quaternion, metres of gripper opening): 1 cm, so that change is z = 0.1; and z is clipped, so any state far
# outside the demonstrations (exploration, a person's correction) stays an input the tower has seen the scale of.
PROPRIO_STD_FLOOR = 1e-2
PROPRIO_Z_CLIP = 5.0


@dataclass
class NormStats:
    """What the checkpoint must carry to read inputs and write actions: action quantiles, proprio moments."""

    action_q01: list[float]
    action_q99: list[float]
    proprio_mean: list[float] = field(default_factory=list)
    proprio_std: list[float] = field(default_factory=list)

    @classmethod
    def identity(cls, action_dim: int, proprio_dim: int) -> NormStats:
        return cls([-1.0] * action_dim, [1.0] * action_dim, [0.0] * proprio_dim, [1.0] * proprio_dim)

    @classmethod
    def from_arrays(cls, actions: np.ndarray, proprio: np.ndarray, action_range: str = "full") -> NormStats:
        """`action_range`: "full" bins the robot's whole [-1, 1] action range; "demo_quantiles" bins the
        demonstrations' q01..q99 (OpenVLA's choice, the paper's §2.2), which is finer but clips every action
        outside what the few demonstrations did. In human-in-the-loop RL the corrections are exactly such
        actions (lift the peg, back off, turn): clipped, a "lift" became "descend slowly" and BC on the
        interventions taught the policy to push into the fixture (sim study: 30 % → 0 % in 6 minutes)."""
        actions = np.asarray(actions, np.float64)
        proprio = np.asarray(proprio, np.float64)
        if not (np.isfinite(actions).all() and np.isfinite(proprio).all()):
            raise PolicyError("demonstration actions/proprio contain NaN or inf", hint="re-record those episodes")
        if action_range == "full":
            d = actions.shape[1]
            q01, q99 = [-1.0] * d, [1.0] * d
        elif action_range == "demo_quantiles":
            q01, q99 = np.quantile(actions, 0.01, axis=0).tolist(), np.quantile(actions, 0.99, axis=0).tolist()
        else:
            raise PolicyError(f"unknown action_range {action_range!r}", hint='use "full" or "demo_quantiles"')
        return cls(q01, q99, proprio.mean(0).tolist(), np.maximum(proprio.std(0), PROPRIO_STD_FLOOR).tolist())

    def proprio_z(self, proprio: torch.Tensor) -> torch.Tensor:
        """Robot-unit proprio (B, P) → clipped z-scores; the floor applies to stats saved before it existed."""
        mean = torch.as_tensor(self.proprio_mean, dtype=proprio.dtype, device=proprio.device)
        std = torch.as_tensor(self.proprio_std, dtype=proprio.dtype, device=proprio.device).clamp_min(PROPRIO_STD_FLOOR)
        return ((proprio - mean) / std).clamp(-PROPRIO_Z_CLIP, PROPRIO_Z_CLIP)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @classmethod
    def from_json(cls, text: str) -> NormStats:
        return cls(**json.loads(text))


class ActionTokenizer:
    def __init__(self, stats: NormStats, n_bins: int = 256):
        self.n_bins = n_bins
        self.q01 = np.asarray(stats.action_q01, np.float32)
        self.q99 = np.asarray(stats.action_q99, np.float32)
        if self.q01.shape != self.q99.shape or (self.q99 < self.q01).any():
            raise PolicyError(f"bad action quantiles q01={self.q01} q99={self.q99}")
        self.scaled = (self.q99 - self.q01) > _MIN_RANGE
        self.centres = (-1.0 + (2.0 * np.arange(n_bins) + 1.0) / n_bins).astype(np.float32)

    @property
    def bin_width(self) -> float:
        return 2.0 / self.n_bins

    def normalize(self, action):
        """Robot units → [-1, 1] by q01/q99 (numpy or torch, any leading shape, last dim D)."""
        q01, q99, scaled = self._like(action)
        x = (action - q01) / (q99 - q01 + _MIN_RANGE * ~scaled) * 2 - 1
        x = _xp(action).clip(_xp(action).where(scaled, x, action), -1, 1)
        return x if isinstance(x, torch.Tensor) else x.astype(np.float32)

    def denormalize(self, x):
        """[-1, 1] → robot units (numpy or torch; differentiable for torch)."""
        q01, q99, scaled = self._like(x)
        a = _xp(x).where(scaled, (x + 1) / 2 * (q99 - q01) + q01, x)
        return a if isinstance(a, torch.Tensor) else a.astype(np.float32)

    def encode(self, action) -> np.ndarray:
        """Robot-unit actions (..., D) → tokens (..., D) int64 in [0, n_bins)."""
        x = self.normalize(np.asarray(action, np.float32))
        return np.clip(np.floor((x + 1) / 2 * self.n_bins), 0, self.n_bins - 1).astype(np.int64)

    def decode(self, tokens) -> np.ndarray:
        """Tokens (..., D) → robot-unit actions (..., D) float32 (bin centres)."""
        return self.denormalize(self.centres[np.asarray(tokens, np.int64)])

    def _like(self, ref):
        if isinstance(ref, torch.Tensor):
            return (torch.as_tensor(self.q01, device=ref.device, dtype=ref.dtype),
                    torch.as_tensor(self.q99, device=ref.device, dtype=ref.dtype),
                    torch.as_tensor(self.scaled, device=ref.device))
        return self.q01, self.q99, self.scaled


def _xp(x):
    return torch if isinstance(x, torch.Tensor) else np
