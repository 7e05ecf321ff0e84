"""Inputs and outputs of the towers: action tokens, image patches, the prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lastr1.policy.action_tokenizer import ActionTokenizer, NormStats
from lastr1.policy.image_processor import ImageProcessor


@settings(max_examples=200, deadline=None)
@given(
    lo=st.floats(-1, 0.9), span=st.floats(1e-3, 1.0), frac=st.lists(st.floats(0, 1), min_size=1, max_size=16),
    n_bins=st.sampled_from([256, 64]),
)
def test_action_tokens_round_trip_within_half_a_bin(lo, span, frac, n_bins):
    hi = min(lo + span, 1.0)
    tok = ActionTokenizer(NormStats([lo], [hi]), n_bins)
    a = (lo + np.asarray(frac, np.float32) * (hi - lo))[:, None].astype(np.float32)
    t = tok.encode(a)
    assert t.min() >= 0 and t.max() < n_bins
    half_bin = (hi - lo) / n_bins  # half of a 2/n-wide bin in [-1, 1], mapped back to robot units
    assert np.abs(tok.decode(t) - a).max() <= half_bin * (1 + 1e-3) + 1e-6
    # the torch path (learner, differentiable) agrees with numpy
    torch.testing.assert_close(tok.normalize(torch.from_numpy(a)), torch.from_numpy(tok.normalize(a)))


def test_action_tokens_clip_and_constant_dims():
    tok = ActionTokenizer(NormStats([-0.5, 1.0], [0.5, 1.0]))  # the second dim never moved in the demos
    t = tok.encode(np.array([[2.0, 1.0], [-2.0, 1.0]], np.float32))
    assert t[0, 0] == 255 and t[1, 0] == 0  # out of [q01, q99] → the end bins
    assert np.abs(tok.decode(t)[:, 1] - 1.0).max() <= 1 / 256 + 1e-6  # passes through, no 1/0 blow-up
    sweep = np.linspace(-0.5, 0.5, 10_000)[:, None].repeat(2, 1).astype(np.float32)
    assert len(np.unique(tok.encode(sweep)[:, 0])) == 256  # every class is used


def test_stats_from_demonstrations():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (1000, 3))
    s = NormStats.from_arrays(actions, rng.normal(size=(1000, 8)), "demo_quantiles")
    assert np.allclose(s.action_q01, np.quantile(actions, 0.01, axis=0))
    assert NormStats.from_json(s.to_json()) == s


def test_full_range_bins_keep_corrections_the_demonstrations_never_made():
    """Demonstrations that only ever descend (z ≤ −0.3) and a correction that lifts (z = +1): with the demo
    quantiles the lift is clipped into a descent; with the full range it stays a lift."""
    from lastr1.policy.action_tokenizer import ActionTokenizer

    rng = np.random.default_rng(0)
    demos = np.stack([rng.uniform(-0.2, 0.8, 500), rng.uniform(-1.0, -0.3, 500)], 1)
    lift = np.array([[0.0, 1.0]], np.float32)
    proprio = rng.normal(size=(500, 8))
    narrow = ActionTokenizer(NormStats.from_arrays(demos, proprio, "demo_quantiles"))
    full = ActionTokenizer(NormStats.from_arrays(demos, proprio))

    def decode(tok, x):
        return tok.denormalize(tok.centres[np.abs(tok.normalize(x)[..., None] - tok.centres).argmin(-1)])

    assert decode(narrow, lift)[0, 1] < -0.2  # the lift came back as a descent
    assert decode(full, lift)[0, 1] > 0.99
    assert np.abs(decode(full, demos.astype(np.float32)) - demos).max() <= 1.0 / 256 + 1e-6
    with pytest.raises(Exception, match="action_range"):
        NormStats.from_arrays(demos, proprio, "percentiles")
    with pytest.raises(Exception, match="NaN"):
        NormStats.from_arrays(np.full((3, 2), np.nan), np.zeros((3, 8)))


@pytest.mark.parametrize("shape, min_pixels", [((128, 128), 1024), ((100, 130), 1024), ((128, 128), 65536),
                                               ((480, 640), 65536)])
def test_image_patches_match_transformers_qwen_processor(shape, min_pixels):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ref = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3, size={"shortest_edge": min_pixels, "longest_edge": 256 * 256})
    ours = ImageProcessor(patch_size=16, min_pixels=min_pixels, max_pixels=256 * 256)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    expect = ref(images=list(imgs), return_tensors="np")
    pix, grid = ours(imgs)
    assert grid.tolist() == expect["image_grid_thw"].tolist()
    np.testing.assert_allclose(pix.numpy(), expect["pixel_values"], atol=2e-6)
    assert ours.tokens(*shape) == int(np.prod(expect["image_grid_thw"][0])) // 4


def test_tiny_tokenizer_and_prompt_layout():
    from lastr1.policy import hf_compat
    from lastr1.policy.prompt import PromptBuilder, tiny_tokenizer

    tok = tiny_tokenizer()
    text = "insert the hexagon — block ✓"
    assert tok.decode(tok.encode(text).ids) == text  # byte-level: any instruction encodes
    b = PromptBuilder(tok, "<|im_start|>user\n{images}{instruction}<|im_end|>\n", merge_size=2)
    p = b.build("pick", [(1, 8, 8), (1, 4, 6)])
    pad = b.ids[hf_compat.IMAGE_PAD]
    assert (p.ids == pad).sum() == 16 + 6
    assert sum(v if k == "text" else v[0] * v[1] * v[2] // 4 for k, v in p.segments) == len(p.ids)
    assert [k for k, _ in p.segments] == ["text", "image", "text", "image", "text"]
    with pytest.raises(Exception, match="instruction"):
        PromptBuilder(tok, "{images} only", 2)
