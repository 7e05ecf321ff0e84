"""The layer loop both towers run, and the attention masks that make them one dual system.

Keys/values are plain per-layer (k, v) tensors (B, kv_heads, S, head_dim), so the reasoning tower's cache can
be kept for κ control steps, sliced at the chosen latent exit, and read by either acting stack.
"""

from __future__ import annotations

import torch
from torch import nn

from lastr1.policy import hf_compat

KV = list[tuple[torch.Tensor, torch.Tensor]]


def run_stack(
    layers: nn.ModuleList,
    norm: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor | None,
    past: KV | None = None,
    deepstack: list[torch.Tensor] | None = None,
    visual_mask: torch.Tensor | None = None,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, KV]:
    """Run decoder layers over h (B, L, d); returns the final-normed hidden states and each layer's own new
    (k, v). With `past`, layer i's queries also attend over past[i] (masked by `mask` (B, 1, L, S + L)).
    `checkpoint`: recompute each layer in the backward pass (see `maybe_checkpoint`)."""
    own: KV = []
    for i, layer in enumerate(layers):
        h, kv = maybe_checkpoint(checkpoint, hf_compat.decoder_layer, layer, h, cos, sin, mask,
                                 None if past is None else past[i])
        own.append(kv)
        if deepstack is not None and i < len(deepstack):
            h = add_deepstack(h, visual_mask, deepstack[i])
    return norm(h), own


def maybe_checkpoint(on: bool, fn, *args):
    """fn(*args), with gradient checkpointing when `on` and autograd is recording: only the layer's inputs are
    kept and its activations recomputed in the backward pass (a third more compute for ~1/20 of the
    activation memory; what lets the learner's micro-batches fit a 24 GB card, benchmarks/gpu.py)."""
    if on and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def add_deepstack(h: torch.Tensor, visual_mask: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Qwen3-VL DeepStack: add a vision layer's merged features to the hidden states at the image tokens."""
    add = torch.zeros_like(h)
    add[visual_mask] = feats.to(h.dtype)
    return h + add


def extend(kv: KV, new: KV) -> KV:
    return [(torch.cat([k, nk], 2), torch.cat([v, nv], 2)) for (k, v), (nk, nv) in zip(kv, new)]


def slice_kv(kv: KV, end: int) -> KV:
    return [(k[:, :, :end], v[:, :, :end]) for k, v in kv]


def causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, L) key validity (False = left padding) → (B, 1, L, L) causal "may attend" mask. A padded query
    still sees itself so no row is empty (an all-masked softmax row is NaN)."""
    n = valid.shape[1]
    tril = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=valid.device)
    return ((tril & valid[:, None, :]) | eye)[:, None]


def acting_mask(prefix_valid: torch.Tensor, n_fast: int, n_action: int) -> torch.Tensor:
    """Mask of the acting block over [prefix keys ; fast-input keys ; action keys] → (B, 1, A, S + A).

    Every acting token reads the valid prefix (prompt, latents up to the chosen exit). Fast-input tokens
    (wrist image, proprio) see each other; the action placeholders see the fast inputs and each other in
    both directions (parallel decoding). The prefix never sees the acting block: it was computed before it."""
    b, s = prefix_valid.shape
    a = n_fast + n_action
    own = torch.ones(a, a, dtype=torch.bool, device=prefix_valid.device)
    own[:n_fast, n_fast:] = False
    return torch.cat([prefix_valid[:, None, :].expand(b, a, s), own.expand(b, a, a)], dim=2)[:, None]


def joint_mask(valid: torch.Tensor, prefix_valid: torch.Tensor, n_fast: int, n_action: int) -> torch.Tensor:
    """One sequence [reasoning ; acting] (the shared backbone's teacher-forced pass): the reasoning part is
    causal and blind to the acting block; the acting block is masked as in `acting_mask`."""
    b, r = valid.shape
    a = n_fast + n_action
    top = torch.cat([causal_mask(valid)[:, 0], torch.zeros(b, r, a, dtype=torch.bool, device=valid.device)], 2)
    bottom = acting_mask(prefix_valid, n_fast, n_action)[:, 0]
    return torch.cat([top, bottom], 1)[:, None]
