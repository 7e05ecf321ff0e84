"""A fresh policy from its config: `model: tiny` builds a random Qwen3-VL of `policy.tiny` sizes (seeded, for
CPU tests and the simulated demo); anything else names a local folder holding a pretrained Qwen3-VL, whose
tokenizer and image settings come along. Loading a saved policy is policy/checkpoint.py's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lastr1.policy import hf_compat
from lastr1.policy.image_processor import ImageProcessor
from lastr1.policy.model import Policy
from lastr1.policy.prompt import tiny_tokenizer, token_ids

if TYPE_CHECKING:
    from lastr1.configs.policy import PolicyConfig

log = logging.getLogger(__name__)

# What the robot side feeds and takes per arm: proprio = position (3), quaternion (4), gripper width; actions =
# a 6-DoF Cartesian delta + the gripper command (robot/env.py).
PROPRIO_PER_ARM = 8
ACTION_PER_ARM = 7

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_policy(cfg: PolicyConfig, n_arms: int = 1, proprio_dim: int | None = None) -> Policy:
    """A new policy for `n_arms` arms from `cfg` (the `policy` section), its new heads seeded too."""
    proprio_dim = PROPRIO_PER_ARM * n_arms if proprio_dim is None else proprio_dim
    dtype = _DTYPES[cfg.dtype]
    if cfg.model == "tiny":
        tok = tiny_tokenizer()
        config = hf_compat.tiny_config(cfg.tiny, tok.get_vocab_size(), token_ids(tok), cfg.attn_implementation)
        vlm = hf_compat.build_random(config, dtype, cfg.device, cfg.seed)
        proc = ImageProcessor(patch_size=cfg.tiny.patch_size, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    else:
        folder = Path(cfg.model).expanduser()
        # Every small file first: a bad folder fails in a second, not after loading gigabytes.
        hf_compat.read_model_config(folder)
        hf_compat.weight_files(folder)
        tok = hf_compat.load_tokenizer(folder)
        settings = hf_compat.read_preprocessor(folder)
        check_prompt(cfg, folder)
        vlm = hf_compat.load_pretrained(folder, dtype, cfg.device, cfg.attn_implementation)
        hf_compat.check_processor(folder, vlm, settings)
        proc = ImageProcessor(**{"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels, **settings})
    torch.manual_seed(cfg.seed + 1)
    return Policy(cfg, vlm, tok, proc, n_arms, proprio_dim, source=cfg.model)


def check_prompt(cfg: PolicyConfig, folder: Path) -> bool:
    """Whether `policy.prompt` lays one image and an instruction out as the folder's chat template does; a
    warning when not (the model was instruction-tuned on its template, but a lab may change it on purpose)."""
    one = hf_compat.VISION_START + hf_compat.IMAGE_PAD + hf_compat.VISION_END
    theirs = hf_compat.chat_prompt(folder, "INSTRUCTION")
    ours = cfg.prompt.format(images=one, instruction="INSTRUCTION")
    if theirs is not None and theirs != ours:
        log.warning("policy.prompt renders %r but %s's chat template renders %r; the model was tuned on the "
                    "latter", ours, folder, theirs)
    return theirs is None or theirs == ours
