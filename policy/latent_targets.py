"""Offline latent targets (paper §2.2, appendix C.1): DINOv3 `<CLS>` of future frames, top-k channels.

`lastr1 latents --config CFG` walks the recorded episodes under `<run_dir>/<learner.demo_dir>` and writes, beside
each, `latent_targets.npy` of shape (T, L_max, k) float16: target i of step t is the `<CLS>` embedding of the
camera frame at min(t + latent_stride·(i+1), T−1) — the future the reasoning tower learns to imagine — restricted
to k = the tower's hidden size channels.

Which k channels. The paper: "extract its <CLS> token as a holistic image embedding and apply top-k (k = 2560)
selection based on feature magnitude along the channel dimension". Read per vector, each frame would keep a
different channel set, so the same slot of two targets would hold unrelated features and the channel indices
would be thrown away — the tower could not learn a consistent mapping, and a cosine loss between such vectors
compares apples with pears. We therefore pick ONE channel set for the whole dataset: the k channels with the
largest mean |feature| over every frame of the chosen camera ("the most salient visual components"), kept in
ascending channel order. The indices and what produced them go to `<dataset>/latent_channels.npy` /
`latent_channels.json`, so a rerun (new episodes, a resumed run) reuses exactly the same channels and a later
reader knows what the targets are.

Resumable: an episode that already has `latent_targets.npy` (written atomically) is skipped; the per-frame
`<CLS>` features of the channel-statistics pass are cached under `<dataset>/.latent_cache/` so an interruption
during that pass does not recompute the teacher on the episodes it already saw.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lastr1.errors import Lastr1Error
from lastr1.policy.hf_compat import tower_hidden_size

log = logging.getLogger(__name__)

CHANNELS_FILE = "latent_channels.npy"
CHANNELS_META = "latent_channels.json"
CACHE_DIR = ".latent_cache"
TARGETS_FILE = "latent_targets.npy"
# DINOv3's image processor (transformers DINOv3ViTImageProcessor): ImageNet statistics, 224 × 224, bilinear.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
# Seed of the random tiny teacher: the same config must give the same teacher in every run, or a resumed run
# would mix targets from two different networks.
TINY_TEACHER_SEED = 0


class LatentTargetError(Lastr1Error):
    pass


@dataclass
class Teacher:
    """A DINOv3 ViT and how its images must be prepared."""

    model: Any  # transformers DINOv3ViTModel
    name: str  # "tiny(...)" or the folder: recorded with the targets
    size: tuple[int, int]  # (height, width) the processor resizes to
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str = "cpu"

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    def cls(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """`<CLS>` embeddings (N, width) float32 of uint8 RGB frames (N, H, W, 3)."""
        import torch

        out = []
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            for i in range(0, len(frames), batch_size):
                x = preprocess(np.asarray(frames[i : i + batch_size]), self.size, self.mean, self.std)
                x = torch.from_numpy(x).to(self.device, dtype)
                # pooler_output is the final-norm hidden state at position 0, i.e. the <CLS> token.
                out.append(self.model(pixel_values=x).pooler_output.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.width), np.float32)


def preprocess(frames: np.ndarray, size: tuple[int, int], mean, std) -> np.ndarray:
    """uint8 (N, H, W, 3) → float32 (N, 3, h, w): resize, scale to [0, 1], ImageNet mean/std — what
    DINOv3ViTImageProcessor does, without torchvision. The resize is torch's antialiased bilinear, the kernel
    torchvision's resize itself calls, so a pretrained teacher sees the pixels it was trained on."""
    import torch
    import torch.nn.functional as F

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise LatentTargetError(f"expected RGB frames (N, H, W, 3), got shape {frames.shape}")
    x = torch.from_numpy(np.array(frames, dtype=np.uint8))  # a copy: episodes are read-only mmaps
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    x = x.numpy()
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    return ((x - m) / s).astype(np.float32)


def build_teacher(policy_cfg) -> Teacher:
    """The random tiny DINOv3 (`latent_teacher: tiny`) or a pretrained one from a local folder."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    if policy_cfg.latent_teacher == "tiny":
        t = policy_cfg.tiny_teacher
        config = DINOv3ViTConfig(
            hidden_size=t.hidden_size, num_hidden_layers=t.layers, num_attention_heads=t.heads,
            intermediate_size=4 * t.hidden_size, patch_size=t.patch_size, image_size=DEFAULT_SIZE,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_TEACHER_SEED)
            model = DINOv3ViTModel(config)
        name = f"tiny(hidden={t.hidden_size},layers={t.layers},heads={t.heads},patch={t.patch_size})"
        return Teacher(model.eval(), name, (DEFAULT_SIZE, DEFAULT_SIZE), IMAGENET_MEAN, IMAGENET_STD)

    folder = Path(policy_cfg.latent_teacher).expanduser()
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise LatentTargetError(
            f"latent teacher folder {folder} has no config.json",
            hint="set policy.latent_teacher to a local DINOv3 ViT folder (e.g. a download of "
            "facebook/dinov3-vit7b16-pretrain-lvd1689m) or to `tiny`",
        )
    model_type = json.loads(cfg_file.read_text()).get("model_type")
    if model_type != "dinov3_vit":
        hint = {"dinov3_convnext": "the ConvNeXt DINOv3 variants have no <CLS> token; use a ViT checkpoint",
                "dinov2": "DINOv2 is the previous generation (other features, other preprocessing); the paper's "
                          "targets are DINOv3's"}.get(model_type, "")
        raise LatentTargetError(
            f"{cfg_file} holds a {model_type!r} model; latent targets need a DINOv3 ViT (model_type dinov3_vit)",
            hint=(hint + "; " if hint else "") + "download one, e.g. `hf download "
            "facebook/dinov3-vitl16-pretrain-lvd1689m --local-dir FOLDER` (gated: accept the licence first)",
        )
    if not list(folder.glob("*.safetensors")):
        raise LatentTargetError(f"{folder} holds no *.safetensors weights beside its config.json",
                                hint="download the whole DINOv3 folder (only safetensors weights load)")
    dtype = getattr(torch, policy_cfg.dtype)
    device = policy_cfg.device
    model, info = DINOv3ViTModel.from_pretrained(folder, dtype=dtype, use_safetensors=True, local_files_only=True,
                                                 output_loading_info=True)
    if info.get("missing_keys") or info.get("mismatched_keys"):
        bad = sorted(info.get("missing_keys") or []) + sorted(info.get("mismatched_keys") or [])
        raise LatentTargetError(f"{folder}'s weights do not hold {len(bad)} of the teacher's tensors (e.g. "
                                f"{', '.join(map(str, bad[:3]))})",
                                hint="the weight files do not match its config.json: download the folder again")
    model = model.to(device).eval()
    size, mean, std = (DEFAULT_SIZE, DEFAULT_SIZE), IMAGENET_MEAN, IMAGENET_STD
    proc = folder / "preprocessor_config.json"
    if proc.is_file():
        p = json.loads(proc.read_text())
        s = p.get("size") or {}
        if "height" in s and "width" in s:
            size = (int(s["height"]), int(s["width"]))
        elif "shortest_edge" in s:
            size = (int(s["shortest_edge"]),) * 2
        mean = tuple(p.get("image_mean", mean))
        std = tuple(p.get("image_std", std))
    return Teacher(model, str(folder.resolve()), size, mean, std, device)


def select_channels(mean_abs: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the k channels of largest mean magnitude; ties go to the lower index."""
    mean_abs = np.asarray(mean_abs, np.float64)
    if k > mean_abs.shape[0]:
        raise LatentTargetError(
            f"the latent teacher's <CLS> has {mean_abs.shape[0]} channels but the reasoning tower's hidden size "
            f"is {k}: top-k selection needs a teacher at least as wide as the tower",
            hint="use a wider DINOv3 (the paper's k = 2560 for Qwen3-VL-4B needs the 4096-wide ViT-7B) or, for "
            "the tiny policy, raise policy.tiny_teacher.hidden_size",
        )
    order = np.argsort(-mean_abs, kind="stable")[:k]
    return np.sort(order).astype(np.int64)


def future_index(n_steps: int, latent_max: int, stride: int) -> np.ndarray:
    """(T, L) frame index of target i at step t: min(t + stride·(i+1), T−1)."""
    t = np.arange(n_steps)[:, None]
    i = np.arange(latent_max)[None, :]
    return np.minimum(t + stride * (i + 1), n_steps - 1)


def make_targets(cls: np.ndarray, channels: np.ndarray, latent_max: int, stride: int) -> np.ndarray:
    """(T, L_max, k) float16 targets of one episode from its per-frame `<CLS>` (T, width)."""
    sel = np.asarray(cls, np.float32)[:, channels]
    out = sel[future_index(len(cls), latent_max, stride)]
    if not np.isfinite(out).all() or np.abs(out).max(initial=0.0) >= np.finfo(np.float16).max:
        raise LatentTargetError("teacher features are not finite or overflow float16; check the teacher weights")
    return out.astype(np.float16)


def _write_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, np.ndarray):
        with open(tmp, "wb") as f:
            np.save(f, data)
    else:
        tmp.write_text(data)
    tmp.replace(path)


def compute_latent_targets(
    root: str | Path,
    policy_cfg,
    camera: str = "front",
    batch_size: int = 32,
    force: bool = False,
    teacher: Teacher | None = None,
    progress: bool = True,
) -> dict:
    """Write latent targets for every episode under `root` that lacks them; returns a summary dict."""
    from tqdm import tqdm

    from lastr1.transport.demo_store import episode_paths, load_episode, save_latent_targets

    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        raise LatentTargetError(f"{root} is a LeRobot dataset: `lastr1 latents` reads only our own recordings",
                                hint="warm up on it with `lastr1 warmup --no-latent-loss`")
    paths = episode_paths(root)
    if not paths:
        raise LatentTargetError(f"{root} holds no episodes", hint="record demonstrations with `lastr1 record`")
    k = tower_hidden_size(policy_cfg)
    L, stride = int(policy_cfg.latent_max), int(policy_cfg.latent_stride)
    if stride < 1 or L < 1:
        raise LatentTargetError(f"policy.latent_stride ({stride}) and policy.latent_max ({L}) must be ≥ 1")
    teacher = teacher or build_teacher(policy_cfg)
    if teacher.width < k:
        select_channels(np.zeros(teacher.width), k)  # raises the narrow-teacher error
    settings = dict(teacher=teacher.name, teacher_width=teacher.width, k=k, camera=camera,
                    latent_max=L, latent_stride=stride)

    # Checked before --force deletes anything.
    for p in paths:
        ep = load_episode(p)
        if camera not in ep.images:
            raise LatentTargetError(
                f"{p} has no camera {camera!r} (it has {', '.join(ep.meta['cameras'])})",
                hint="pick the camera with --camera NAME",
            )

    ch_file, meta_file, cache = root / CHANNELS_FILE, root / CHANNELS_META, root / CACHE_DIR
    if force:
        for p in paths:
            (p / TARGETS_FILE).unlink(missing_ok=True)
        ch_file.unlink(missing_ok=True)
        meta_file.unlink(missing_ok=True)
        shutil.rmtree(cache, ignore_errors=True)
    if ch_file.is_file():
        old = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        diff = {key: (old.get(key), v) for key, v in settings.items() if old.get(key) != v}
        if diff:
            raise LatentTargetError(
                f"{root} already holds latent targets made with other settings: "
                + ", ".join(f"{key} {a!r} (saved) vs {b!r} (now)" for key, (a, b) in diff.items()),
                hint="rerun with --force to recompute every episode's targets with the current settings",
            )
        channels = np.load(ch_file)
    else:
        channels = None
        orphans = [p.name for p in paths if (p / TARGETS_FILE).is_file()]
        if orphans:
            raise LatentTargetError(
                f"{root} has latent targets ({', '.join(orphans[:3])}...) but no {CHANNELS_FILE} saying which "
                "channels they hold",
                hint="rerun with --force to recompute them all",
            )

    todo = [p for p in paths if not (p / TARGETS_FILE).is_file()]
    if channels is None:
        # Pass 1: per-channel mean |<CLS>| over every frame of the dataset.
        cache.mkdir(exist_ok=True)
        stamp = cache / "settings.json"
        if stamp.is_file() and json.loads(stamp.read_text()) != settings:
            shutil.rmtree(cache)
            cache.mkdir()
        _write_atomic(stamp, json.dumps(settings))
        total, n = np.zeros(teacher.width, np.float64), 0
        for p in tqdm(paths, desc="latents: channel statistics", unit="ep", disable=not progress):
            f = cache / f"{p.name}.npy"
            if f.is_file():
                cls = np.load(f)
            else:
                cls = teacher.cls(load_episode(p).images[camera], batch_size)
                _write_atomic(f, cls)
            total += np.abs(cls).sum(0)
            n += len(cls)
        channels = select_channels(total / max(n, 1), k)
        _write_atomic(meta_file, json.dumps(dict(settings, frames=n, selection="mean |CLS| over dataset"), indent=1))
        _write_atomic(ch_file, channels)

    for p in tqdm(todo, desc="latents: targets", unit="ep", disable=not progress):
        f = cache / f"{p.name}.npy"  # written by the statistics pass (kept on disk, not in memory)
        cls = np.load(f) if f.is_file() else teacher.cls(load_episode(p).images[camera], batch_size)
        save_latent_targets(p, make_targets(cls, channels, L, stride))
    shutil.rmtree(cache, ignore_errors=True)
    return dict(settings, episodes=len(paths), computed=len(todo), skipped=len(paths) - len(todo),
                channels=str(ch_file))
