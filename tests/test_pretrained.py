"""The pretrained path on tiny random checkpoints in their published layout (tests/pretrained_helpers.py):
a Qwen3-VL folder and a DINOv3 folder load as saved, and each way a real folder can be wrong is a clear error
naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from policy_helpers import INSTRUCTION, frames, tiny_cfg
from pretrained_helpers import write_dinov2, write_dinov3, write_qwen3_vl

from lastr1.policy import build_policy
from lastr1.policy.build import check_prompt
from lastr1.policy.checkpoint import load_policy, save_policy
from lastr1.policy.errors import PolicyError
from lastr1.policy.latent_targets import LatentTargetError, build_teacher


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return write_qwen3_vl(tmp_path_factory.mktemp("models") / "Qwen3-VL-tiny")


@pytest.fixture
def folder(published, tmp_path):
    """A private copy to break."""
    return shutil.copytree(published, tmp_path / published.name)


def test_published_folder_loads_every_tower_weight_and_its_processor(published, tmp_path):
    from safetensors.torch import load_file

    index = json.loads((published / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) > 1 and "lm_head.weight" in index
    saved = {}
    for shard in set(index.values()):
        saved.update(load_file(str(published / shard)))
    policy = build_policy(tiny_cfg(model=str(published)), n_arms=1, proprio_dim=8)
    # the tower's own weights (peft wraps the attention projections as `.base_layer`; LoRA starts apart)
    own = {"model." + k.replace(".base_layer", ""): v for k, v in policy.vlm.state_dict().items() if "lora_" not in k}
    assert set(own) == set(saved) - {"lm_head.weight"}
    for k, v in own.items():
        assert torch.equal(v, saved[k].float()), k
    # the folder's preprocessor_config.json: Qwen3-VL's 65536-pixel floor lifts a 128² frame to 256²
    assert policy.image_processor.min_pixels == 65536 and policy.image_processor.tokens(128, 128) == 64
    config = json.loads((published / "config.json").read_text())
    ids = policy.prompts.build(INSTRUCTION, [policy.image_processor.grid(128, 128)]).ids
    assert (ids == config["image_token_id"]).sum() == 64 and config["vision_start_token_id"] in ids
    assert check_prompt(policy.cfg, published)
    prefix = policy.reason({"front": frames(0)["front"]}, INSTRUCTION)
    out = policy.act(prefix, {"wrist": frames(0)["wrist"]}, frames(0)["proprio"])
    assert out.action.shape == (8, 7) and np.isfinite(out.action).all()
    # a checkpoint of a pretrained policy holds the adapters, not the tower, and reloads the same
    ck = save_policy(policy, tmp_path / "ck")
    assert not (ck / "base.safetensors").exists()
    again = load_policy(ck)
    for (n, a), (_, b) in zip(policy.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_a_prompt_unlike_the_chat_template_is_reported(published):
    assert not check_prompt(tiny_cfg(model=str(published), prompt="{images}{instruction}"), published)


def _build(folder):
    return build_policy(tiny_cfg(model=str(folder)), n_arms=1, proprio_dim=8)


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def test_missing_tokenizer_names_the_file(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(PolicyError, match=r"has no tokenizer\.json \(found: tokenizer_config\.json\)") as e:
        _build(folder)
    assert "hf download" in e.value.hint


def test_tokenizer_without_vision_specials(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if "vision" not in t["content"]]
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(PolicyError, match=r"tokenizer\.json lacks the Qwen-VL special tokens.*vision_start"):
        _build(folder)


def test_text_only_checkpoint(folder):
    _edit_json(folder / "config.json", model_type="qwen3", architectures=["Qwen3ForCausalLM"])
    with pytest.raises(PolicyError, match=r"config\.json describes a text-only language model"):
        _build(folder)


def test_wrong_architecture(folder):
    _edit_json(folder / "config.json", model_type="qwen2_5_vl", architectures=["Qwen2_5_VLForConditionalGeneration"])
    with pytest.raises(PolicyError, match=r"config\.json describes model_type 'qwen2_5_vl'.*Qwen2_5_VL"):
        _build(folder)


def test_missing_shard(folder):
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(PolicyError, match=f"lacks {shard.name}") as e:
        _build(folder)
    assert "interrupted" in e.value.hint


def test_weights_that_do_not_fill_the_config(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["num_hidden_layers"] += 1  # a layer the files do not hold
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PolicyError, match=r"weight files do not hold .*layers\.2\."):
        _build(folder)


def test_no_safetensors(folder):
    for f in folder.glob("model*.safetensors*"):
        f.unlink()
    with pytest.raises(PolicyError, match="holds no model.safetensors"):
        _build(folder)


def test_missing_or_foreign_preprocessor(folder):
    (folder / "preprocessor_config.json").rename(folder / "moved.json")
    with pytest.raises(PolicyError, match=r"has no preprocessor_config\.json"):
        _build(folder)
    (folder / "moved.json").rename(folder / "preprocessor_config.json")
    _edit_json(folder / "preprocessor_config.json", patch_size=14)  # Qwen2.5-VL's
    with pytest.raises(PolicyError, match=r"preprocessor_config\.json has patch_size 14 .* built for 16"):
        _build(folder)


def test_dinov3_folder_and_its_wrong_kinds(tmp_path):
    teacher = build_teacher(tiny_cfg(latent_teacher=str(write_dinov3(tmp_path / "dinov3"))))
    assert teacher.width == 96 and teacher.size == (224, 224) and teacher.mean == (0.485, 0.456, 0.406)
    cls = teacher.cls(np.zeros((2, 64, 64, 3), np.uint8))
    assert cls.shape == (2, 96) and np.isfinite(cls).all()
    with pytest.raises(LatentTargetError, match=r"dinov2/config\.json holds a 'dinov2' model") as e:
        build_teacher(tiny_cfg(latent_teacher=str(write_dinov2(tmp_path / "dinov2"))))
    assert "previous generation" in e.value.hint
    (tmp_path / "dinov3" / "model.safetensors").unlink()
    with pytest.raises(LatentTargetError, match="holds no .*safetensors weights"):
        build_teacher(tiny_cfg(latent_teacher=str(tmp_path / "dinov3")))
