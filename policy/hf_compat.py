"""Everything this package assumes about `transformers` (written against 5.23), in one module.

The towers run their own layer loop (policy/towers.py) so that the acting tower can attend over the
reasoning tower's cached keys/values with our own masks and positions; that loop reaches into Qwen3-VL's
modules only through the functions here: config construction, model loading, the decoder layer's parts,
M-RoPE cos/sin, the vision tower's merged + DeepStack features, and the tokenizer. When a `transformers`
release renames any of these, this is the file to fix (tests/test_policy_core.py compares our loop against
`Qwen3VLModel.forward`, so a silent change fails there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from lastr1.policy.errors import PolicyError

if TYPE_CHECKING:
    from lastr1.configs.policy import PolicyConfig

# Module names peft targets (attention of every text layer; MLP by config). Vision blocks use `qkv`/`proj`,
# so these never match the (frozen) vision encoder.
ATTENTION_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJ = ("gate_proj", "up_proj", "down_proj")

# Qwen2-VL/Qwen3-VL prompt specials (names as in the Qwen tokenizer).
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
PROMPT_SPECIALS = ("<|im_start|>", "<|im_end|>", VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)


def _qwen3_vl():
    from transformers.models.qwen3_vl import configuration_qwen3_vl as cfg_mod
    from transformers.models.qwen3_vl import modeling_qwen3_vl as model_mod

    return cfg_mod, model_mod


def tiny_config(t, vocab_size: int, token_ids: dict[str, int], attn_implementation: str = "sdpa"):
    """A Qwen3VLConfig from our `TinyTowerConfig` sizes (also used for the 4B-shaped benchmark)."""
    cfg_mod, _ = _qwen3_vl()
    head_dim = t.head_dim or t.hidden_size // t.heads
    if t.heads % t.kv_heads:
        raise PolicyError(f"policy.tiny.heads ({t.heads}) must be a multiple of kv_heads ({t.kv_heads})")
    section = list(t.mrope_section) or _scaled_mrope_section(head_dim)
    if sum(section) != head_dim // 2:
        raise PolicyError(f"policy.tiny.mrope_section {section} must sum to head_dim/2 = {head_dim // 2}")
    if any(i >= t.vision_layers for i in t.deepstack):
        raise PolicyError(f"policy.tiny.deepstack {t.deepstack} names vision layers beyond {t.vision_layers}")
    config = cfg_mod.Qwen3VLConfig(
        text_config=dict(
            vocab_size=t.vocab_size or vocab_size,
            hidden_size=t.hidden_size,
            intermediate_size=t.intermediate_size,
            num_hidden_layers=t.layers,
            num_attention_heads=t.heads,
            num_key_value_heads=t.kv_heads,
            head_dim=head_dim,
            max_position_embeddings=262144,
            rope_parameters=dict(
                rope_type="default", rope_theta=t.rope_theta, mrope_section=section, mrope_interleaved=True
            ),
        ),
        vision_config=dict(
            depth=t.vision_layers,
            hidden_size=t.vision_hidden_size,
            intermediate_size=t.vision_intermediate_size,
            num_heads=t.vision_heads,
            out_hidden_size=t.hidden_size,
            patch_size=t.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=t.vision_positions,
            deepstack_visual_indexes=list(t.deepstack),
        ),
        image_token_id=token_ids[IMAGE_PAD],
        video_token_id=token_ids[VIDEO_PAD],
        vision_start_token_id=token_ids[VISION_START],
        vision_end_token_id=token_ids[VISION_END],
        tie_word_embeddings=True,
    )
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    return config


def _scaled_mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2
    h = w = max(1, round(half * 20 / 64))
    return [half - h - w, h, w]


def build_random(config, dtype: torch.dtype, device: str | torch.device, seed: int) -> nn.Module:
    """A randomly initialised Qwen3VLModel (no LM head: our heads read the hidden states)."""
    _, model_mod = _qwen3_vl()
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_mod.Qwen3VLModel(config)
    return model.to(dtype)


# What a published Qwen3-VL folder (e.g. Qwen/Qwen3-VL-4B-Instruct) holds, besides its weight files.
MODEL_TYPE = "qwen3_vl"
TOKENIZER_FILE = "tokenizer.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
_GET_IT = "download the whole folder, e.g. `hf download Qwen/Qwen3-VL-4B-Instruct --local-dir FOLDER`"


def _read_json(path: Path) -> dict:
    """A JSON file of a model folder, or a PolicyError naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PolicyError(f"cannot read {path}: {e}", hint=_GET_IT) from None


def read_model_config(folder: str | Path) -> dict:
    """config.json of a Qwen3-VL folder, checked to be one: a missing file, a text-only Qwen3 or any other
    architecture is a PolicyError naming the file."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise PolicyError(f"policy.model {str(folder)!r} is neither 'tiny' nor a folder with a Qwen3-VL config.json",
                          hint=f"{_GET_IT}, or use --policy.model tiny")
    d = _read_json(path)
    kind = d.get("model_type")
    if kind != MODEL_TYPE:
        what = ("a text-only language model (no vision tower)" if kind in ("qwen3", "qwen2", "qwen3_moe")
                else f"model_type {kind!r}")
        raise PolicyError(f"{path} describes {what}, not a Qwen3-VL vision-language model (model_type "
                          f"{MODEL_TYPE!r}, architectures {d.get('architectures')})",
                          hint=f"point policy.model at a Qwen3-VL folder (dense: 2B/4B/8B Instruct); {_GET_IT}")
    if not isinstance((d.get("text_config") or {}).get("hidden_size"), int):
        raise PolicyError(f"{path} has no text_config.hidden_size", hint=_GET_IT)
    return d


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files a folder's weights live in (every shard its index names), or a PolicyError
    naming the first one that is missing."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise PolicyError(f"cannot read the shard index {index}: {e}", hint=_GET_IT) from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise PolicyError(f"{folder} lacks {missing[0]} ({len(missing)} of the {len(names)} shards "
                              f"{index.name} names are missing)", hint=f"the download was interrupted: {_GET_IT}")
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise PolicyError(f"{folder} holds no model.safetensors nor model.safetensors.index.json",
                      hint=f"only safetensors checkpoints load (never pickled .bin files); {_GET_IT}")


def load_pretrained(folder: str | Path, dtype: torch.dtype, device: str, attn_implementation: str) -> nn.Module:
    """Qwen3VLModel from a local folder holding a Qwen3-VL checkpoint as published
    (Qwen3VLForConditionalGeneration: `model.`-prefixed keys, sharded with an index; the LM head is not
    loaded). Every tower weight must come from the files: a missing one is an error, never a random init."""
    _, model_mod = _qwen3_vl()
    folder = Path(folder)
    read_model_config(folder)
    weight_files(folder)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the unused lm_head; we check what matters below
    try:
        model, info = model_mod.Qwen3VLModel.from_pretrained(
            folder, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True,
            use_safetensors=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise PolicyError(f"cannot load Qwen3-VL from {folder}: {e}", hint=_GET_IT) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    bad = sorted(info.get("missing_keys") or []) + sorted(info.get("mismatched_keys") or [])
    if bad:
        raise PolicyError(f"{folder}'s weight files do not hold {len(bad)} of the tower's tensors (e.g. "
                          f"{', '.join(map(str, bad[:3]))})",
                          hint=f"the files do not match its config.json (a partial or converted checkpoint): {_GET_IT}")
    return model.to(device)


def tower_hidden_size(cfg: PolicyConfig) -> int:
    """The reasoning tower's width for a policy config without building the model: the latent width, and
    so the k of the DINOv3 top-k latent targets (paper §2.2)."""
    if cfg.model == "tiny":
        return int(cfg.tiny.hidden_size)
    return int(read_model_config(Path(cfg.model).expanduser())["text_config"]["hidden_size"])


# --- parts of the model -------------------------------------------------------------------------------------


def text_model(model: nn.Module) -> nn.Module:
    return model.language_model


def vision_model(model: nn.Module) -> nn.Module:
    return model.visual


def text_config(model: nn.Module):
    return model.config.text_config


def vision_config(model: nn.Module):
    return model.config.vision_config


def embed_tokens(model: nn.Module) -> nn.Embedding:
    return model.language_model.embed_tokens


def layers(lm: nn.Module) -> nn.ModuleList:
    return lm.layers


def final_norm(lm: nn.Module) -> nn.Module:
    return lm.norm


def kv_geometry(model: nn.Module) -> tuple[int, int, int]:
    """(layers, kv heads, head_dim): what an acting expert must share to read the tower's cache."""
    tc = text_config(model)
    return tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim


def new_text_stack(model: nn.Module, hidden: int, intermediate: int, heads: int) -> tuple[nn.ModuleList, nn.Module]:
    """Fresh decoder layers + final norm with the tower's layer count/KV geometry and the given width."""
    _, model_mod = _qwen3_vl()
    tc = text_config(model).__class__(**{**text_config(model).to_dict(), "hidden_size": hidden,
                                         "intermediate_size": intermediate, "num_attention_heads": heads})
    tc._attn_implementation = text_config(model)._attn_implementation
    stack = nn.ModuleList([model_mod.Qwen3VLTextDecoderLayer(tc, i) for i in range(tc.num_hidden_layers)])
    for m in stack.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=tc.initializer_range)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return stack, model_mod.Qwen3VLTextRMSNorm(hidden, eps=tc.rms_norm_eps)


def rotary(model: nn.Module, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE cos/sin for positions (3, B, L) (t, h, w rows), in x's dtype."""
    return model.language_model.rotary_emb(x, positions)


def decoder_layer(
    layer: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor | None,
    past: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One Qwen3 decoder layer whose queries attend over [past keys/values ; own keys/values].

    `mask` is a boolean (B, 1, Q, K) "may attend" matrix over those keys (None: all). Returns the new hidden
    state and this call's own (k, v) — post-RoPE, post-k_norm, as Qwen3VLTextAttention caches them."""
    _, model_mod = _qwen3_vl()
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    shape = (*x.shape[:-1], -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(x).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(shape)).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    q, k = model_mod.apply_rotary_pos_emb(q, k, cos, sin)
    keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling, enable_gqa=True)
    h = h + attn.o_proj(out.transpose(1, 2).reshape(*x.shape[:-1], -1))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, (k, v)


def image_features(model: nn.Module, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
    """Merged visual tokens (N, d_text) and the DeepStack features (list of (N, d_text)) for flat patches."""
    visual = model.visual
    out = visual(pixel_values.to(visual.dtype), grid_thw=grid_thw, return_dict=True)
    return out.pooler_output, list(out.deepstack_features)


# --- processor side -----------------------------------------------------------------------------------------


def load_tokenizer(folder: str | Path):
    """The pretrained model's own tokenizer (a `tokenizers.Tokenizer`), read from its tokenizer.json and
    checked to carry the Qwen chat and vision specials the prompt is made of."""
    from tokenizers import Tokenizer

    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in Path(folder).glob("*token*"))) or "no tokenizer files"
        raise PolicyError(f"{folder} has no {TOKENIZER_FILE} (found: {found})",
                          hint=f"copy the model's {TOKENIZER_FILE} (and tokenizer_config.json) into it: {_GET_IT}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises a bare Exception on a corrupt file
        raise PolicyError(f"cannot read {path}: {e}", hint=_GET_IT) from None
    missing = [s for s in PROMPT_SPECIALS if tok.token_to_id(s) is None]
    if missing:
        raise PolicyError(f"{path} lacks the Qwen-VL special tokens {missing}: not a Qwen2-VL/Qwen3-VL tokenizer",
                          hint=f"use the tokenizer files that came with the Qwen3-VL weights: {_GET_IT}")
    return tok


def check_processor(folder: str | Path, model: nn.Module, proc: dict) -> None:
    """The folder's preprocessor_config.json must cut images into the patches its vision tower was built for."""
    vc = vision_config(model)
    want = dict(patch_size=vc.patch_size, merge_size=vc.spatial_merge_size, temporal_patch_size=vc.temporal_patch_size)
    for key, value in want.items():
        if key in proc and int(proc[key]) != int(value):
            raise PolicyError(f"{Path(folder) / PREPROCESSOR_FILE} has {key} {proc[key]} but the vision tower in "
                              f"config.json was built for {value}",
                              hint=f"the preprocessor file belongs to another model: {_GET_IT}")


def read_preprocessor(folder: str | Path) -> dict:
    """Image processor settings of a pretrained folder (Qwen2VLImageProcessor keys, as the published
    preprocessor_config.json), or a PolicyError naming the file when it is missing or unreadable."""
    path = Path(folder) / PREPROCESSOR_FILE
    if not path.is_file():
        raise PolicyError(f"{folder} has no {PREPROCESSOR_FILE} (how the model's images are resized and patched)",
                          hint=f"copy it from the model's download: {_GET_IT}")
    d = _read_json(path)
    out: dict[str, Any] = {}
    size = d.get("size") or {}
    if "shortest_edge" in size:
        out["min_pixels"] = int(size["shortest_edge"])
    if "longest_edge" in size:
        out["max_pixels"] = int(size["longest_edge"])
    for key in ("min_pixels", "max_pixels"):
        if key in d:
            out[key] = int(d[key])
    for key, ours in (("patch_size", "patch_size"), ("merge_size", "merge_size"),
                      ("temporal_patch_size", "temporal_patch_size"), ("image_mean", "mean"), ("image_std", "std")):
        if key in d:
            out[ours] = tuple(d[key]) if isinstance(d[key], list) else d[key]
    return out


def chat_prompt(folder: str | Path, instruction: str) -> str | None:
    """The folder's own chat template rendered for one user turn (one image, then `instruction`) with the
    assistant's turn opened — what `policy.prompt` should produce — or None if the folder has no template."""
    folder = Path(folder)
    template = None
    for name, key in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        path = folder / name
        if path.is_file():
            template = json.loads(path.read_text()).get(key) or template
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    if not isinstance(template, str):
        return None
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)
