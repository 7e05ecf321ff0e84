"""The text side of the reasoning tower's input: the tokenizer and the prompt layout.

A pretrained folder brings its own tokenizer; the tiny tower gets a byte-level one built here with the
`tokenizers` library (256 byte symbols, no merges — any instruction encodes, nothing to train or download)
plus the Qwen chat and vision specials the prompt uses.

<latent_start>, <latent_end> and the 256 action tokens are not text: the policy owns their embeddings and
output rows as small parameters (policy/model.py), the same numbers the authors get by extending the
vocabulary and restricting the logits to the new range, without resizing a 151k-row table of the pretrained
model (and so the adapter the learner ships stays small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lastr1.policy import hf_compat
from lastr1.policy.errors import PolicyError

PAD = "<|endoftext|>"
SPECIALS = [PAD, "<|im_start|>", "<|im_end|>", hf_compat.VISION_START, hf_compat.VISION_END,
            hf_compat.IMAGE_PAD, hf_compat.VIDEO_PAD]


def tiny_tokenizer():
    """A byte-level BPE tokenizer without merges, plus the Qwen specials (deterministic: same ids anywhere)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return tok


def token_ids(tok) -> dict[str, int]:
    ids = {}
    for s in SPECIALS:
        i = tok.token_to_id(s)
        if i is None and s != PAD:
            raise PolicyError(f"the tokenizer has no {s!r} token; it is not a Qwen2-VL/Qwen3-VL tokenizer")
        ids[s] = i
    return ids


@dataclass
class Prompt:
    """One sample's prompt: token ids and the layout M-RoPE needs."""

    ids: np.ndarray  # (P,) int64, image tokens as <|image_pad|>
    segments: list  # [("text", n) | ("image", (t, gh, gw))] in order


class PromptBuilder:
    def __init__(self, tokenizer, template: str, merge_size: int):
        if "{images}" not in template or "{instruction}" not in template:
            raise PolicyError(f"policy.prompt {template!r} must contain {{images}} and {{instruction}}")
        self.tok = tokenizer
        self.ids = token_ids(tokenizer)
        self.template = template
        self.merge = merge_size
        self.pad_id = self.ids[PAD] if self.ids[PAD] is not None else 0
        self._cache: dict = {}

    def _encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids if text else []

    def build(self, instruction: str, grids: list[tuple[int, int, int]]) -> Prompt:
        """The prompt with one <|vision_start|> <|image_pad|>×n <|vision_end|> block per slow camera
        (cached: the actor asks for the same instruction every κ steps)."""
        key = (instruction, tuple(map(tuple, grids)))
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = self._build(instruction, grids)
        return self._cache[key]

    def _build(self, instruction: str, grids) -> Prompt:
        before, rest = self.template.split("{images}", 1)
        between, after = rest.split("{instruction}", 1)
        ids: list[int] = self._encode(before)
        segments: list = []
        n_text = len(ids)
        for grid in grids:
            n = grid[0] * grid[1] * grid[2] // self.merge**2
            ids += [self.ids[hf_compat.VISION_START]]
            segments.append(("text", n_text + 1))
            ids += [self.ids[hf_compat.IMAGE_PAD]] * n
            segments.append(("image", tuple(grid)))
            ids += [self.ids[hf_compat.VISION_END]]
            n_text = 1
        tail = self._encode(between + instruction + after)
        ids += tail
        segments.append(("text", n_text + len(tail)))
        return Prompt(np.asarray(ids, dtype=np.int64), [s for s in segments if s[0] == "image" or s[1] > 0])
