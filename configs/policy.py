"""The dual-system latent-reasoning VLA (design §4, paper §2.2/§2.4, appendix D.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TinyTowerConfig:
    """Sizes of the random Qwen3-VL built when `model: tiny` (CPU tests, the simulated demo)."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_layers: int = 1
    patch_size: int = 16


@dataclass
class TinyDinoConfig:
    """Sizes of the random DINOv3 built when `latent_teacher: tiny`; its width must be ≥ the tower's hidden
    size, since top-k channel selection keeps k = hidden size channels (paper §2.2)."""

    hidden_size: int = 96
    layers: int = 2
    heads: int = 4
    patch_size: int = 16


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
    tiny: TinyTowerConfig = field(default_factory=TinyTowerConfig)
    # DINOv3 that makes the offline latent targets: "tiny" (random) or a local pretrained folder.
    latent_teacher: str = "tiny"
    tiny_teacher: TinyDinoConfig = field(default_factory=TinyDinoConfig)
    # Future frames whose DINOv3 <CLS> become the latent targets: frame t + latent_stride·(i+1), i < L_max.
    latent_stride: int = 1
    checkpoint: str = ""
    extra: dict = field(default_factory=dict)
