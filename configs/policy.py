"""The dual-system latent-reasoning VLA (design §4, paper §2.2/§2.4, appendix D.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TinyTowerConfig:
    """Sizes of the random Qwen3-VL built when `model: tiny` (CPU tests, the simulated demo). The same block
    set to Qwen3-VL-4B's numbers (configs/policy/qwen3vl_4b.yaml) builds a 4B-shaped random model for
    benchmarks without downloading anything."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_layers: int = 1
    patch_size: int = 16
    # 0: hidden_size // heads. Qwen3-VL-4B: 128.
    head_dim: int = 0
    vision_heads: int = 2
    vision_intermediate_size: int = 64
    # Vision layers whose features DeepStack adds to the first text layers (Qwen3-VL-4B: [5, 11, 17]).
    deepstack: list[int] = field(default_factory=lambda: [0])
    # Learned vision position table (a square); Qwen3-VL uses 48² and interpolates to each image's grid.
    vision_positions: int = 256
    # RoPE base. Qwen3-VL's 5e6 suits 128-d heads over 256k tokens; with 16-d heads it leaves ~2 useful
    # frequencies over our ~200 tokens, and the acting tower's zero placeholders differ by RoPE alone.
    rope_theta: float = 10_000.0
    # Interleaved M-RoPE split of head_dim/2 frequencies over (t, h, w); must sum to head_dim // 2.
    # Empty: split like Qwen3-VL's [24, 20, 20] of 64, scaled.
    mrope_section: list[int] = field(default_factory=list)
    # 0: the size of the tiny byte-level tokenizer. 151936 for the 4B shape.
    vocab_size: int = 0


@dataclass
class TinyDinoConfig:
    """Sizes of the random DINOv3 built when `latent_teacher: tiny`; its width must be ≥ the tower's hidden
    size, since top-k channel selection keeps k = hidden size channels (paper §2.2)."""

    hidden_size: int = 96
    layers: int = 2
    heads: int = 4
    patch_size: int = 16


@dataclass
class ExpertConfig:
    """The acting expert of `acting: expert` (LaST0's Mixture-of-Transformers): a separate decoder stack with
    the reasoning tower's layer count, KV heads and head_dim, so each of its layers can attend over the
    tower's cached keys/values of the same layer. Width may differ (0 = the tower's)."""

    hidden_size: int = 0
    intermediate_size: int = 0
    heads: int = 0
    # "copy": start from the tower's (pretrained) text layers — the few-demo warm-up then only has to adapt
    # them (needs the tower's width); "random": fresh weights (any width; needs a longer warm-up).
    init: Literal["copy", "random"] = "copy"


@dataclass
class WarmupConfig:
    """`lastr1 warmup`: supervised fine-tuning on the demonstrations (paper appendix D.2).

    What it trains: the LoRA adapters of both towers + the new small modules (<latent_start>/<latent_end>
    embeddings, action and exit heads, wrist/proprio projections). The paper fine-tunes the 4B model fully on
    8 H20s; one GPU box cannot hold AdamW states for 2 × 4B parameters, and 30 demonstrations would only
    over-fit them, so we adapt low-rank instead (as the paper itself does for the real-world RL stage)."""

    # Relative paths are relative to the run's run_dir.
    out: str = "checkpoints/warmup"
    steps: int = 1000  # appendix D.2: real-world models fine-tuned 1K iterations on 30 demos
    batch_size: int = 8
    grad_accum: int = 8  # 8 × 8 = the paper's global batch of 64
    # The paper's peak LR was lost in extraction; 1e-4 is the usual LoRA SFT rate.
    lr: float = 1.0e-4
    min_lr_ratio: float = 0.1  # cosine decay to 10 % (appendix D.2)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # Loss = w_action·CE(action tokens) + w_exit·CE(<latent_end>) + w_latent·(1 − cos). The paper's numbers
    # were lost in extraction; these are the authors' LAPO weights (notes): (56·L_a + 1·L_exit)/57 + 0.1·L_z,
    # i.e. the exit counts as one token among the 56 action tokens.
    w_action: float = 56 / 57
    w_exit: float = 1 / 57
    w_latent: float = 0.1
    # Latent length per sample: the paper fixes 8 for single-task real-world data; 0 = draw uniformly from
    # the candidates (2, 4, 6, 8) per sample, as for multi-task LIBERO.
    latent_len: int = 8
    # Train without latent targets (no `lastr1 latents` run): the latent slots are fed zeros and get no loss.
    no_latent_loss: bool = False
    log_every: int = 10
    seed: int = 0


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
    # What the 256 bins span per dimension: "full" = the robot's [-1, 1] action range (2/256 of a full step
    # per bin: ~0.1 mm at 1.5 cm steps); "demo_quantiles" = the demonstrations' q01..q99 (OpenVLA, paper
    # §2.2), which clips every intervention that goes beyond what the demonstrations did (see
    # policy/action_tokenizer.py NormStats.from_arrays for what that did to the sim study).
    action_range: Literal["full", "demo_quantiles"] = "full"
    # Latent CoT: groups of G latents closed by <latent_end>, up to L_max.
    latent_group: int = 2
    latent_max: int = 8
    # "adaptive": the exit after any group of G (paper §2.4); "fixed": always L_max latents (the paper's
    # fixed-length baseline, Fig. 4b: set latent_max to the length); "off": no latent reasoning, the acting
    # tower reads the prompt alone (the Action-Only baseline of Fig. 3). Checkpoints keep the mode.
    latent_mode: Literal["adaptive", "fixed", "off"] = "adaptive"
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
    # Training passes (warm-up, learner) recompute each decoder layer in the backward pass instead of keeping
    # its activations: a third more compute, far less memory (benchmarks/gpu.py; needed on a 24 GB card).
    grad_checkpointing: bool = False
    # torch.compile the acting tower's per-step pass (the fast path); the first step at each latent length
    # compiles (seconds to a minute). Off by default: the eager path is what the tests pin down.
    compile_acting: bool = False
    tiny: TinyTowerConfig = field(default_factory=TinyTowerConfig)
    # DINOv3 that makes the offline latent targets: "tiny" (random) or a local pretrained folder.
    latent_teacher: str = "tiny"
    tiny_teacher: TinyDinoConfig = field(default_factory=TinyDinoConfig)
    # Future frames whose DINOv3 <CLS> become the latent targets: frame t + latent_stride·(i+1), i < L_max.
    latent_stride: int = 1
    # The acting expert's geometry (acting: expert).
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    # Cameras read by the reasoning tower (slow, every kappa steps) and by the acting tower (fast, every step).
    slow_cameras: list[str] = field(default_factory=lambda: ["front"])
    fast_cameras: list[str] = field(default_factory=lambda: ["wrist"])
    # Image pre-processing bounds (Qwen2-VL smart_resize: sides rounded to patch·merge multiples, area
    # clamped). A pretrained folder's preprocessor_config.json overrides these (Qwen3-VL: 65536 / 16777216,
    # so a 256×256 frame passes unchanged); the tiny tower keeps the sim's 128×128 frames as they are.
    min_pixels: int = 1024
    max_pixels: int = 16777216
    # The chat-style prompt around the slow images ({images}) and the instruction; <latent_start> follows.
    prompt: str = "<|im_start|>user\n{images}{instruction}<|im_end|>\n<|im_start|>assistant\n"
    # Critic: an ensemble of 4-layer MLPs on [acting readout; normalised action chunk] (design §4).
    q_ensemble: int = 2
    q_hidden: int = 256
    # Seed of the random tiny tower (the checkpoint also stores its weights).
    seed: int = 0
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    checkpoint: str = ""
    extra: dict = field(default_factory=dict)
