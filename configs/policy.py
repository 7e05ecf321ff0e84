"""The dual-system latent-reasoning VLA (design §4, paper §2.2/§2.4, appendix D.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class PolicyConfig:
    # "tiny": a random Qwen3-VL built from a config (CPU tests, the sim demo); otherwise a local folder.
    model: str = "tiny"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str = "sdpa"
    device: str = "cpu"
    # Action chunk: H steps × D dims, 256 bins over q01/q99-normalised actions.
    chunk: int = 8
    action_dim: int = 7
    n_bins: int = 256
    # Latent CoT: groups of G latents closed by <latent_end>, up to L_max.
    latent_group: int = 2
    latent_max: int = 8
    exit_threshold: float = 0.99
    exit_temperature: float = 1.6
    # "expert": separate acting stack (LaST0's Mixture-of-Transformers); "shared": one backbone.
    acting: Literal["expert", "shared"] = "expert"
    # Reasoning tower runs every kappa control steps; the acting tower every step on the cached prefix.
    kappa: int = 4
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_mlp: bool = False
    checkpoint: str = ""
    extra: dict = field(default_factory=dict)
