"""`lastr1 doctor`'s policy checks: Python/torch/CUDA and free GPU memory against the memory plan of the
configured model (policy/memory.py), and the model and latent-teacher folders (files, architecture, dtype) —
all read from disk, nothing loaded."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from lastr1.check import Check
from lastr1.errors import Lastr1Error

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

_FIX_TORCH = "install a CUDA build of torch (https://pytorch.org/get-started/locally/) and the NVIDIA driver"


def needed_gb(cfg: Config, role: str) -> float:
    """GPU memory (GiB) the role needs before activations: parameters (both roles), the trainables' float32
    gradients and AdamW states (learner), and the CUDA overhead — a floor that builds on the meta device in
    seconds; benchmarks/gpu.py adds the measured activations."""
    from lastr1.policy import memory

    c = memory.count(cfg.policy, cfg.task.n_arms)
    need = c.frozen_bytes + c.trainable_bytes + c.q_targets_bytes
    if role == "learner":
        need += 12 * c.trainable
    return need / memory.GB + memory.OVERHEAD_GB


def torch_cuda(cfg: Config, role: str) -> list[Check]:
    try:
        import torch
    except ImportError as e:
        return [Check("python / torch", "FAIL", f"torch is not importable: {e}", _FIX_TORCH)]
    out = [Check("python / torch", "ok", f"Python {platform.python_version()}, torch {torch.__version__}")]
    dev = cfg.policy.device
    if not dev.startswith("cuda"):
        return out + [Check("GPU", "skip", f"policy.device is {dev}")]
    if not torch.cuda.is_available():
        return out + [Check("GPU", "FAIL", f"policy.device is {dev} but torch sees no CUDA device "
                            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", _FIX_TORCH)]
    index = torch.device(dev).index or 0
    free, total = torch.cuda.mem_get_info(index)
    name = torch.cuda.get_device_name(index)
    try:
        need = needed_gb(cfg, role)
    except Lastr1Error as e:
        return out + [Check("GPU", "warn", f"{name}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free; no plan: "
                            f"{str(e).splitlines()[0]}")]
    detail = f"{name}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free; the {role} needs ≥ {need:.1f} GiB"
    if free / 2**30 < need:
        return out + [Check("GPU", "FAIL", detail, "free the GPU (nvidia-smi lists who holds it), or see the "
                            "README's memory table for settings that fit (policy.grad_checkpointing, acting: shared)")]
    return out + [Check("GPU", "ok", detail + " (with activations: python benchmarks/gpu.py)")]


def model_folder(cfg: Config) -> Check:
    """policy.model: a Qwen3-VL folder with every file a build reads (checked as build_policy will)."""
    from lastr1.policy import hf_compat

    if cfg.policy.model == "tiny":
        return Check("policy.model", "skip", "tiny random tower (tests, simulation)")
    folder = Path(cfg.policy.model).expanduser()
    try:
        d = hf_compat.read_model_config(folder)
        shards = hf_compat.weight_files(folder)
        hf_compat.load_tokenizer(folder)
        proc = hf_compat.read_preprocessor(folder)
    except Lastr1Error as e:
        return Check("policy.model", "FAIL", str(e).splitlines()[0], e.hint)
    dtype = d.get("dtype") or d.get("torch_dtype") or (d.get("text_config") or {}).get("dtype", "?")
    size = sum(p.stat().st_size for p in shards) / 2**30
    return Check("policy.model", "ok", f"{folder}: {', '.join(d.get('architectures') or [d['model_type']])}, "
                 f"{dtype}, {len(shards)} shard(s), {size:.1f} GiB, patch {proc.get('patch_size', '?')}")


def teacher_folder(cfg: Config) -> Check:
    """policy.latent_teacher: a DINOv3 ViT folder with safetensors weights, at least the tower's width."""
    if cfg.policy.latent_teacher == "tiny":
        return Check("policy.latent_teacher", "skip", "tiny random teacher")
    folder = Path(cfg.policy.latent_teacher).expanduser()
    path = folder / "config.json"
    fix = "download a DINOv3 ViT, e.g. `hf download facebook/dinov3-vit7b16-pretrain-lvd1689m --local-dir FOLDER`"
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return Check("policy.latent_teacher", "FAIL", f"cannot read {path}: {e}", fix)
    if d.get("model_type") != "dinov3_vit":
        return Check("policy.latent_teacher", "FAIL", f"{path} holds a {d.get('model_type')!r} model, not a "
                     "DINOv3 ViT", fix)
    if not list(folder.glob("*.safetensors")):
        return Check("policy.latent_teacher", "FAIL", f"{folder} holds no *.safetensors weights", fix)
    try:
        from lastr1.policy.hf_compat import tower_hidden_size

        k = tower_hidden_size(cfg.policy)
    except Lastr1Error:
        k = 0  # the model folder's own check says why
    width = int(d.get("hidden_size", 0))
    if width < k:
        return Check("policy.latent_teacher", "FAIL", f"{folder} is {width} wide; top-k needs ≥ {k} (the tower's "
                     "hidden size)", "use the ViT-7B/16 (4096 wide) for Qwen3-VL-4B")
    return Check("policy.latent_teacher", "ok", f"{folder}: DINOv3 ViT, {width} wide, "
                 f"{d.get('dtype') or d.get('torch_dtype') or '?'}")
