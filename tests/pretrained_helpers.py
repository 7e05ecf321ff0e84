"""Tiny random checkpoints written the way their published folders are, so the pretrained path runs with
nothing downloaded: a Qwen3-VL as Qwen/Qwen3-VL-4B-Instruct ships it (Qwen3VLForConditionalGeneration
weights sharded with an index, `model.`-prefixed keys and an lm_head; a Qwen2 byte-level BPE tokenizer with the
real Qwen3-VL special tokens and chat template; preprocessor_config.json and video_preprocessor_config.json),
and a DINOv3 ViT as facebook/dinov3-vit*16-pretrain-lvd1689m ships it."""

from __future__ import annotations

import json
from pathlib import Path

# Qwen3-VL's added tokens, in the published order (ids 151643.. there; here right after the byte alphabet).
QWEN3_VL_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
]

# The user/assistant part of Qwen3-VL-Instruct's chat template (its tool-calling branches left out).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'video' or 'video' in content %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Published Qwen3-VL-4B-Instruct values.
PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}
VIDEO_PREPROCESSOR = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "video_processor_type": "Qwen3VLVideoProcessor",
}
DINO_PREPROCESSOR = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "DINOv3ViTImageProcessorFast",
    "image_std": [0.229, 0.224, 0.225], "resample": 2, "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}


def qwen2_tokenizer(folder: Path):
    """A Qwen2 byte-level BPE tokenizer (a few merges) with Qwen3-VL's specials, saved as the published one:
    tokenizer.json, vocab.json, merges.txt, tokenizer_config.json, chat_template.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2Tokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(QWEN3_VL_SPECIALS)
    tok = Qwen2Tokenizer(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         errors="replace", add_prefix_space=False)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    return core


def write_qwen3_vl(folder: Path, seed: int = 0, shard: str = "150KB") -> Path:
    """A tiny random Qwen3-VL in the published layout (the tiny_cpu.yaml sizes) at `folder`."""
    import torch
    from transformers.models.qwen3_vl import modeling_qwen3_vl as mm

    from lastr1 import configs
    from lastr1.policy import hf_compat

    folder.mkdir(parents=True, exist_ok=True)
    tok = qwen2_tokenizer(folder)
    ids = {s: tok.token_to_id(s) for s in QWEN3_VL_SPECIALS}
    config = hf_compat.tiny_config(configs.load("policy/tiny_cpu").policy.tiny, tok.get_vocab_size(), ids)
    config.tie_word_embeddings = False  # like the 8B: an lm_head in the files that the tower must skip
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    torch.manual_seed(seed)
    model = mm.Qwen3VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size=shard)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR, indent=2))
    return folder


def write_dinov3(folder: Path, hidden: int = 96, seed: int = 0) -> Path:
    """A tiny random DINOv3 ViT saved as the published folder (config.json, model.safetensors,
    preprocessor_config.json); 96 wide, so top-k keeps the tiny tower's 64 channels."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=4 * hidden, patch_size=16, image_size=224)
    torch.manual_seed(seed)
    DINOv3ViTModel(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(DINO_PREPROCESSOR, indent=2))
    return folder


def write_dinov2(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=96, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                             patch_size=16, image_size=224)).save_pretrained(folder)
    return folder
