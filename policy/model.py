"""The dual-system latent-reasoning VLA (paper §2.2, §2.4; design §4).

Slow system — the reasoning tower (Qwen3-VL): reads the slow cameras and the instruction, then generates the
latent chain of thought one embedding at a time through its KV cache, each latent being the previous
position's last hidden state fed back as the next input, in groups of G closed by <latent_end>, up to L_max:

    [prompt with images][<latent_start>] ([z × G][<latent_end>]) × L_max/G  |  [fast inputs][a × H·D]

The exit can only fall at a group end (candidates G, 2G, …, L_max). Groups after the exit are dropped from
the cache but keep their positions, so the acting block's positions never depend on the exit.

Fast system — the acting tower: one pass over [wrist image tokens, proprio token, H·D zero placeholders]
attending over the reasoning tower's cached keys/values (only up to the exit). `acting: expert` runs a
separate decoder stack with the tower's layer count and KV geometry (LaST0's Mixture-of-Transformers: at each
layer the acting queries attend over [tower K/V of that layer ; own K/V]); `acting: shared` runs the tower's
own layers (the authors' LaST-R1 code). The placeholders are bidirectional among themselves; a chunk's
log-probability is the sum over its H·D tokens. `reason()` runs every κ control steps, `act()` every step.

Interface used by the actor and the learner (all shapes batch-first, actions in the robot's [-1, 1] units
unless called *_norm, which are the q01/q99-normalised units of the action tokens):

    open_policy(cfg, n_arms) (policy/checkpoint.py: policy.checkpoint if set, else build_policy)
    build_policy(cfg.policy, n_arms=1, proprio_dim=8) (policy/build.py) / load_policy(path) / save_policy(p, path)
    policy.reason(slow_images, instruction, explore) -> Prefix
    policy.act(prefix, fast_images, proprio, explore, temperature) -> ActOutput
    policy.forward_train(TrainBatch) -> TrainOut                 (teacher-forced, batched, differentiable)
    policy.bin_centres (n_bins,)                                 (π(s) for the Q loss: learner/losses.py)
    policy.q(feature, action_norm) / policy.q_target(...) -> (n_q, B); policy.q_heads, policy.q_targets
    policy.parameter_groups() -> {"lora", "new", "value", "critic"}; policy.trainable_parameters()
    policy.export_adapter(version) -> AdapterBlob; policy.load_adapter(blob); policy.swap(...); policy.version
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lastr1.policy import adapter as adapter_io
from lastr1.policy import hf_compat, towers
from lastr1.policy.action_tokenizer import ActionTokenizer, NormStats
from lastr1.policy.errors import PolicyError
from lastr1.policy.heads import QEnsemble, ValueHead
from lastr1.policy.image_processor import ImageProcessor
from lastr1.policy.positions import mrope_positions
from lastr1.policy.prompt import PromptBuilder

if TYPE_CHECKING:
    from lastr1.configs.policy import PolicyConfig


@dataclass
class Prefix:
    """The slow system's output, reused by `act()` for κ control steps."""

    kv: towers.KV  # per layer (k, v), (1, kv_heads, S, head_dim): prompt + latents up to the exit
    act_pos: int  # first M-RoPE position of the acting block
    latents: torch.Tensor  # (latent_len, d) float32: the latents used (ship them with the transition)
    latent_len: int
    exit_logits: torch.Tensor  # (groups computed,) float32 <latent_end> logits at the candidates
    exit_logprob: float  # explore: log softmax(e/T)[exit]; greedy: log σ(e[exit]) (exit confidence)
    value: float  # value head on the chosen <latent_end>
    version: int  # adapter version that produced it
    # (groups computed × G, d) every latent generated, the dropped groups too: the later exit candidates'
    # logits read them, so LAPO's teacher-forced pass needs them to score the exit as it was sampled
    chain: torch.Tensor | None = None


@dataclass
class ActOutput:
    action: np.ndarray  # (H, D) float32, robot units in [-1, 1] (de-normalised bin centres)
    action_norm: np.ndarray  # (H, D) float32, q01/q99-normalised (what Q reads)
    tokens: np.ndarray  # (H, D) int64 bins
    logprob: float  # sum over the H·D tokens (at `temperature` when exploring)
    feature: torch.Tensor  # (F,) float32 acting readout (what Q reads)
    version: int


@dataclass
class TrainBatch:
    """A batch for the teacher-forced pass. Images uint8 (B, H, W, 3) per camera (numpy or tensor)."""

    slow_images: dict
    instructions: list[str]
    fast_images: dict
    proprio: torch.Tensor | np.ndarray  # (B, P) robot units
    latents: torch.Tensor | np.ndarray  # (B, L_max, d) latents fed back (actor's, or DINOv3 targets); pad any
    latent_len: torch.Tensor | np.ndarray  # (B,) in the candidates (G, 2G, …, L_max)


@dataclass
class TrainOut:
    action_logits: torch.Tensor  # (B, H·D, n_bins) float32
    feature: torch.Tensor  # (B, F) float32 acting readout
    exit_logits: torch.Tensor  # (B, L_max/G) float32
    pred_latents: torch.Tensor  # (B, L_max, d) float32: hidden state predicting each latent slot
    value: torch.Tensor  # (B,) float32 on the chosen <latent_end>


@dataclass
class _PromptBatch:
    embeds: torch.Tensor  # (B, P, d) incl. <latent_start> last
    positions: torch.Tensor  # (3, B, P)
    valid: torch.Tensor  # (B, P) False at left padding
    visual_mask: torch.Tensor  # (B, P) image tokens
    deepstack: list[torch.Tensor]
    next_pos: torch.Tensor  # (B,) position of the first latent slot


class ActingExpert(nn.Module):
    def __init__(self, layers: nn.ModuleList, norm: nn.Module):
        super().__init__()
        self.layers = layers
        self.norm = norm


class Policy(nn.Module):
    """Built by policy/build.py (`build_policy`) or policy/checkpoint.py (`load_policy`, `open_policy`)."""

    def __init__(self, cfg: PolicyConfig, vlm: nn.Module, tokenizer, image_processor: ImageProcessor, n_arms: int,
                 proprio_dim: int, stats: NormStats | None = None, source: str = "tiny"):
        super().__init__()
        if cfg.latent_max % cfg.latent_group:
            raise PolicyError(f"policy.latent_max ({cfg.latent_max}) must be a multiple of latent_group")
        self.cfg = cfg
        self.source = source
        self.n_arms, self.proprio_dim = n_arms, proprio_dim
        self.H, self.D = cfg.chunk, cfg.action_dim * n_arms
        self.G, self.L_max = cfg.latent_group, cfg.latent_max
        self.n_groups = self.L_max // self.G
        self.n_slots = self.L_max + self.n_groups
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.prompts = PromptBuilder(tokenizer, cfg.prompt, image_processor.merge_size)
        self.vlm = vlm
        self.dtype = next(vlm.parameters()).dtype
        self.device = next(vlm.parameters()).device
        lm = hf_compat.text_model(vlm)
        d = hf_compat.text_config(vlm).hidden_size
        self.d = d

        if cfg.acting == "expert":
            expert = self._build_expert(lm)
            self.expert: ActingExpert | None = expert
            d_act = expert.norm.weight.shape[0]
        else:
            self.expert = None
            d_act = d
        self.d_act = d_act
        f32 = dict(device=self.device, dtype=torch.float32)
        embed_rms = _rms(hf_compat.embed_tokens(vlm).weight)
        # New inputs/outputs (the authors' added vocabulary rows), float32 whatever the towers' dtype.
        self.latent_start = nn.Parameter(torch.randn(d, **f32) * embed_rms)
        self.latent_end = nn.Parameter(torch.randn(d, **f32) * embed_rms)
        self.exit_head = nn.Linear(d, 1, **f32)
        self.action_head = nn.Linear(d_act, cfg.n_bins, bias=False, **f32)
        d_vis = hf_compat.vision_config(vlm).out_hidden_size
        self.wrist_proj = nn.Linear(d_vis, d_act, **f32)
        self.proprio_proj = nn.Linear(proprio_dim, d_act, **f32)
        for lin in (self.exit_head, self.action_head, self.proprio_proj):
            nn.init.normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if d_vis == d_act:  # start the wrist tokens as the VLM's own image embeddings
            nn.init.eye_(self.wrist_proj.weight)
            nn.init.zeros_(self.wrist_proj.bias)
        self.value_head = ValueHead(d).to(**f32)
        # Q reads the executed action only (D numbers): a transition's reward and s′ are those of one step.
        self.q_heads = QEnsemble(d_act, self.D, cfg.q_hidden, cfg.q_ensemble).to(**f32)
        self.q_targets = self.q_heads.frozen_copy()
        self._inject_lora()
        self.set_stats(stats or NormStats.identity(self.D, proprio_dim))
        self.version = 0
        self._lock = threading.RLock()
        # The acting tower's pass has fixed shapes per latent exit (4 prefix lengths), so torch.compile traces
        # it once per length; weights are graph inputs, so hot-reloaded adapters apply without a recompile.
        self._acting_pass = torch.compile(towers.run_stack, dynamic=False) if cfg.compile_acting else towers.run_stack
        self.refresh_derived()
        self.eval()

    # --- construction -------------------------------------------------------------------------------------

    def _build_expert(self, lm: nn.Module) -> ActingExpert:
        e = self.cfg.expert
        tc = hf_compat.text_config(self.vlm)
        width = e.hidden_size or tc.hidden_size
        inter = e.intermediate_size or tc.intermediate_size
        heads = e.heads or tc.num_attention_heads
        if heads % tc.num_key_value_heads:
            raise PolicyError(f"policy.expert.heads ({heads}) must be a multiple of the tower's "
                              f"{tc.num_key_value_heads} KV heads")
        same = (width, inter, heads) == (tc.hidden_size, tc.intermediate_size, tc.num_attention_heads)
        if e.init == "copy":
            if not same:
                raise PolicyError("policy.expert.init 'copy' needs the tower's width, MLP size and heads",
                                  hint="set the expert sizes to 0, or use policy.expert.init random")
            return ActingExpert(copy.deepcopy(hf_compat.layers(lm)), copy.deepcopy(hf_compat.final_norm(lm)))
        stack, norm = hf_compat.new_text_stack(self.vlm, width, inter, heads)
        return ActingExpert(stack, norm).to(device=self.device, dtype=self.dtype)

    def _inject_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        names = hf_compat.ATTENTION_PROJ + (hf_compat.MLP_PROJ if self.cfg.lora_mlp else ())
        target = rf"(vlm\.language_model|expert)\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(names)})"
        lora = LoraConfig(r=self.cfg.lora_rank, lora_alpha=self.cfg.lora_alpha,
                          lora_dropout=self.cfg.lora_dropout, target_modules=target, bias="none")
        inject_adapter_in_model(lora, self)
        # peft froze everything but the adapters; the base (vision encoder included) stays frozen, the new
        # small modules train.
        for name, p in self.named_parameters():
            p.requires_grad = "lora_" in name or name.split(".")[0] in self._NEW + ("value_head", "q_heads")

    _NEW = ("latent_start", "latent_end", "exit_head", "action_head", "wrist_proj", "proprio_proj")

    def refresh_derived(self) -> None:
        """Recompute what is derived from the base weights (call after overwriting them): latents enter the
        tower at the token-embedding scale (see `_latent_in`)."""
        self.latent_rms = _rms(hf_compat.embed_tokens(self.vlm).weight)

    def set_stats(self, stats: NormStats) -> None:
        if len(stats.action_q01) != self.D or len(stats.proprio_mean) != self.proprio_dim:
            raise PolicyError(f"stats are for {len(stats.action_q01)} action / {len(stats.proprio_mean)} "
                              f"proprio dims; this policy has {self.D} / {self.proprio_dim}")
        self.stats = stats
        self.action_tokenizer = ActionTokenizer(stats, self.cfg.n_bins)
        self.bin_centres = torch.tensor(self.action_tokenizer.centres, device=self.device)  # normalised units

    # --- inputs -------------------------------------------------------------------------------------------

    def _latent_in(self, z: torch.Tensor) -> torch.Tensor:
        """A latent as the next input: the hidden state itself (no projection, as the authors), rescaled to
        the token embeddings' RMS. The rescale is ours: it makes the DINOv3 targets fed in during warm-up and
        the tower's own hidden states fed back at inference look alike to the tower (cosine loss ignores
        scale, so only the direction is learned)."""
        z = z.float()
        rms = z.pow(2).mean(-1, keepdim=True).add(1e-12).sqrt()
        return (z * (self.latent_rms / rms)).to(self.dtype)

    def _frames(self, images: dict, cameras: list[str], batch: int | None) -> dict:
        missing = [c for c in cameras if c not in images]
        if missing:
            raise PolicyError(f"missing camera image(s) {missing}; the policy reads {cameras}",
                              hint="check policy.slow_cameras / policy.fast_cameras against the robot's cameras")
        out = {}
        for c in cameras:
            x = images[c]
            x = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            if batch is None:
                x = x[None]
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise PolicyError(f"camera {c!r}: expected uint8 (H, W, 3) frames, got {x.dtype} {x.shape[1:]}")
            out[c] = x
        return out

    @torch.no_grad()
    def _vision(self, frames: np.ndarray):
        pv, grid = self.image_processor(frames, self.device)
        emb, deep = hf_compat.image_features(self.vlm, pv, grid)
        return emb, deep, tuple(grid[0].tolist())

    def _prompt_batch(self, slow: dict, instructions: list[str]) -> _PromptBatch:
        b = len(instructions)
        embs, deeps, grids = [], [], []
        for c in self.cfg.slow_cameras:
            emb, deep, grid = self._vision(slow[c])
            n = len(emb) // b
            embs.append(emb.view(b, n, -1))
            deeps.append([x.view(b, n, -1) for x in deep])
            grids.append(grid)
        vis = torch.cat(embs, 1).reshape(-1, self.d)  # sample-major, cameras in prompt order
        deepstack = [torch.cat([d[i] for d in deeps], 1).reshape(-1, self.d) for i in range(len(deeps[0]))]
        prompts = [self.prompts.build(ins, grids) for ins in instructions]
        p_max = max(len(p.ids) for p in prompts) + 1  # + <latent_start>
        ids = torch.full((b, p_max), self.prompts.pad_id, dtype=torch.long)
        pos = torch.zeros(3, b, p_max, dtype=torch.long)
        valid = torch.zeros(b, p_max, dtype=torch.bool)
        next_pos = torch.zeros(b, dtype=torch.long)
        for i, p in enumerate(prompts):
            n = len(p.ids) + 1
            ids[i, p_max - n : -1] = torch.from_numpy(p.ids)
            pp, nxt = mrope_positions(p.segments + [("text", 1)], self.image_processor.merge_size)
            pos[:, i, p_max - n :] = torch.from_numpy(pp)
            valid[i, p_max - n :] = True
            next_pos[i] = nxt
        ids, pos, valid = ids.to(self.device), pos.to(self.device), valid.to(self.device)
        visual_mask = ids == self.prompts.ids[hf_compat.IMAGE_PAD]
        embeds = hf_compat.embed_tokens(self.vlm)(ids)
        embeds = embeds.masked_scatter(visual_mask[..., None], vis.to(embeds.dtype))
        embeds = torch.cat([embeds[:, :-1], self.latent_start.to(self.dtype).expand(b, 1, -1)], 1)
        return _PromptBatch(embeds, pos, valid, visual_mask, deepstack, next_pos.to(self.device))

    def _fast_inputs(self, fast: dict, proprio) -> tuple[torch.Tensor, list]:
        """Acting-block inputs: each fast camera's VLM-vision tokens (frozen encoder, trainable projection)
        and one proprio token. Returns (B, N_fast, d_act) in the towers' dtype and the M-RoPE layout."""
        toks, segments = [], []
        for c in self.cfg.fast_cameras:
            emb, _, grid = self._vision(fast[c])
            b = fast[c].shape[0]
            toks.append(self.wrist_proj(emb.float()).view(b, -1, self.d_act))
            segments.append(("image", grid))
        p = torch.as_tensor(np.asarray(proprio, np.float32) if not isinstance(proprio, torch.Tensor) else proprio,
                            dtype=torch.float32, device=self.device)
        if p.ndim != 2 or p.shape[1] != self.proprio_dim:
            raise PolicyError(f"proprio must be (B, {self.proprio_dim}), got {tuple(p.shape)}")
        if not torch.isfinite(p).all():
            raise PolicyError("proprio contains NaN or inf", hint="check the arm state reader")
        toks.append(self.proprio_proj(self.stats.proprio_z(p))[:, None])
        segments.append(("text", 1))
        return torch.cat(toks, 1).to(self.dtype), segments

    def _acting_inputs(self, fast_tokens: torch.Tensor, segments: list, act_pos: torch.Tensor):
        """[fast tokens ; H·D zero placeholders] and their positions (3, B, A) from act_pos (B,)."""
        b, n_fast = fast_tokens.shape[:2]
        hd = self.H * self.D
        x = torch.cat([fast_tokens, fast_tokens.new_zeros(b, hd, fast_tokens.shape[-1])], 1)
        rel, _ = mrope_positions(segments + [("text", hd)], self.image_processor.merge_size)
        pos = torch.from_numpy(rel).to(self.device)[:, None, :] + act_pos.view(1, b, 1)
        return x, pos

    def _act_stack(self):
        if self.expert is not None:
            return self.expert.layers, self.expert.norm
        lm = hf_compat.text_model(self.vlm)
        return hf_compat.layers(lm), hf_compat.final_norm(lm)

    def _heads(self, h_act: torch.Tensor, n_fast: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = h_act[:, n_fast:].float()
        return self.action_head(a), a.mean(1)

    # --- slow system --------------------------------------------------------------------------------------

    def _rotary(self, x, pos):
        return hf_compat.rotary(self.vlm, x, pos)

    def _step(self, x: torch.Tensor, pos: int, kv: towers.KV):
        lm = hf_compat.text_model(self.vlm)
        p = torch.full((3, 1, 1), pos, dtype=torch.long, device=self.device)
        cos, sin = self._rotary(x, p)
        h, new = towers.run_stack(hf_compat.layers(lm), hf_compat.final_norm(lm), x, cos, sin, None, kv)
        return h, towers.extend(kv, new)

    @torch.no_grad()
    def reason(self, slow_images: dict, instruction: str, explore: bool = False) -> Prefix:
        """Slow images (camera → uint8 HxWx3) + instruction → the latent chain of thought and its KV cache.

        Greedy (`explore=False`): stop at the first candidate whose p(<latent_end>) ≥ exit_threshold, else
        take the most probable candidate. Rollouts (`explore=True`): all candidates are computed and the exit
        is sampled from softmax(<latent_end> logits / exit_temperature) across them (paper eq. 6)."""
        with self._lock:
            pb = self._prompt_batch(self._frames(slow_images, self.cfg.slow_cameras, None), [instruction])
            lm = hf_compat.text_model(self.vlm)
            cos, sin = self._rotary(pb.embeds, pb.positions)
            h, kv = towers.run_stack(hf_compat.layers(lm), hf_compat.final_norm(lm), pb.embeds, cos, sin,
                                     towers.causal_mask(pb.valid), None, pb.deepstack, pb.visual_mask)
            n_prompt = pb.embeds.shape[1]
            if self.cfg.latent_mode == "off":  # Action-Only: the acting tower reads the prompt's cache alone
                return Prefix(kv=kv, act_pos=int(pb.next_pos[0]) + self.n_slots,
                              latents=h.new_zeros(0, self.d, dtype=torch.float32), latent_len=0,
                              exit_logits=h.new_zeros(0, dtype=torch.float32), exit_logprob=0.0,
                              value=float(self.value_head(h[0, -1].float())), version=self.version)
            fixed = self.cfg.latent_mode == "fixed"
            last, pos = h[:, -1:], int(pb.next_pos[0])
            latents, exits, ends = [], [], []
            le = self.latent_end.to(self.dtype).view(1, 1, -1)
            for _ in range(self.n_groups):
                for _ in range(self.G):
                    latents.append(last[0, 0].float())
                    last, kv = self._step(self._latent_in(last), pos, kv)
                    pos += 1
                exits.append(self.exit_head(last[0, 0].float())[0])
                last, kv = self._step(le, pos, kv)
                pos += 1
                ends.append(last[0, 0].float())
                if not (explore or fixed) and torch.sigmoid(exits[-1]) >= self.cfg.exit_threshold:
                    break
            e = torch.stack(exits)
            if fixed:
                g, exit_logprob = self.n_groups - 1, 0.0
            else:
                g, exit_logprob = choose_exit(e, explore, self.cfg.exit_threshold, self.cfg.exit_temperature)
            length = (g + 1) * self.G
            return Prefix(
                kv=towers.slice_kv(kv, n_prompt + (g + 1) * (self.G + 1)),
                act_pos=int(pb.next_pos[0]) + self.n_slots,
                latents=torch.stack(latents[:length]),
                latent_len=length,
                exit_logits=e.float(),
                exit_logprob=exit_logprob,
                value=float(self.value_head(ends[g])),
                version=self.version,
                chain=torch.stack(latents),
            )

    # --- fast system --------------------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, prefix: Prefix, fast_images: dict, proprio, explore: bool = False,
            temperature: float = 1.0) -> ActOutput:
        """One action chunk from the cached prefix and the current fast inputs (camera → uint8 HxWx3,
        proprio (P,) robot units). Greedy: argmax per token; explore: sample at `temperature`."""
        if not temperature > 0:
            raise PolicyError(f"action temperature must be > 0, got {temperature}")
        with self._lock:
            fast = self._frames(fast_images, self.cfg.fast_cameras, None)
            toks, segments = self._fast_inputs(fast, np.asarray(proprio, np.float32)[None])
            x, pos = self._acting_inputs(toks, segments, torch.tensor([prefix.act_pos], device=self.device))
            cos, sin = self._rotary(x, pos)
            s = prefix.kv[0][0].shape[2]
            mask = towers.acting_mask(torch.ones(1, s, dtype=torch.bool, device=self.device), toks.shape[1],
                                      self.H * self.D)
            layers, norm = self._act_stack()
            h, _ = self._acting_pass(layers, norm, x, cos, sin, mask, prefix.kv)
            logits, feature = self._heads(h, toks.shape[1])
            logits = logits[0]
            if not torch.isfinite(logits).all():
                raise PolicyError("the acting tower produced NaN/inf logits; no action is returned",
                                  hint="the weights are broken: reload the last good adapter or checkpoint")
            if explore:
                logp = F.log_softmax(logits / temperature, -1)
                tokens = torch.multinomial(logp.exp(), 1)[:, 0]
            else:
                logp = F.log_softmax(logits, -1)
                tokens = logits.argmax(-1)
            logprob = float(logp.gather(-1, tokens[:, None]).sum())
            tokens = tokens.view(self.H, self.D).cpu().numpy()
            action_norm = self.action_tokenizer.centres[tokens]
            return ActOutput(
                action=self.action_tokenizer.denormalize(action_norm).astype(np.float32),
                action_norm=action_norm.astype(np.float32), tokens=tokens, logprob=logprob,
                feature=feature[0].float(), version=self.version,
            )

    # --- training -----------------------------------------------------------------------------------------

    def forward_train(self, batch: TrainBatch) -> TrainOut:
        """Teacher-forced batched pass over [prompt][latent slots][acting block] with the given latents fed
        back at the latent slots. Differentiable w.r.t. LoRA and the new modules; one joint pass (the expert
        runs layer by layer beside the tower, Mixture-of-Transformers style)."""
        b = len(batch.instructions)
        pb = self._prompt_batch(self._frames(batch.slow_images, self.cfg.slow_cameras, b), batch.instructions)
        lens = torch.as_tensor(np.asarray(batch.latent_len), dtype=torch.long, device=self.device).view(b)
        mode = self.cfg.latent_mode
        if mode == "fixed":
            lens = torch.full_like(lens, self.L_max)
        elif mode == "off":  # the slots are computed but masked from the acting tower: lengths do not matter
            lens = torch.full_like(lens, self.G)
        if ((lens % self.G != 0) | (lens < self.G) | (lens > self.L_max)).any():
            raise PolicyError(f"latent_len {lens.tolist()} must be in {list(range(self.G, self.L_max + 1, self.G))}")
        z = torch.as_tensor(batch.latents, device=self.device).float()
        if z.shape != (b, self.L_max, self.d):
            raise PolicyError(f"latents must be (B, {self.L_max}, {self.d}), got {tuple(z.shape)}")
        groups = lens // self.G - 1  # chosen exit group per sample
        slot_latent = [g * (self.G + 1) + j for g in range(self.n_groups) for j in range(self.G)]
        slot_end = [g * (self.G + 1) + self.G for g in range(self.n_groups)]
        slots = torch.empty(b, self.n_slots, self.d, dtype=self.dtype, device=self.device)
        slots[:, slot_latent] = self._latent_in(z)
        slots[:, slot_end] = self.latent_end.to(self.dtype)
        n_p = pb.embeds.shape[1]
        x_r = torch.cat([pb.embeds, slots], 1)
        ar = torch.arange(self.n_slots, device=self.device)
        pos_r = torch.cat([pb.positions, (pb.next_pos[:, None] + ar).expand(3, b, -1)], 2)
        valid_r = torch.cat([pb.valid, torch.ones(b, self.n_slots, dtype=torch.bool, device=self.device)], 1)
        vis_r = torch.cat([pb.visual_mask, torch.zeros_like(valid_r[:, n_p:])], 1)
        active = ar[None] < ((groups + 1) * (self.G + 1))[:, None]  # slots up to the chosen <latent_end>
        if mode == "off":
            active = torch.zeros_like(active)
        prefix_valid = torch.cat([pb.valid, active], 1)

        fast = self._frames(batch.fast_images, self.cfg.fast_cameras, b)
        toks, segments = self._fast_inputs(fast, batch.proprio)
        x_a, pos_a = self._acting_inputs(toks, segments, pb.next_pos + self.n_slots)
        h_r, h_a = self._joint(x_r, pos_r, valid_r, vis_r, pb.deepstack, x_a, pos_a, prefix_valid, toks.shape[1])

        logits, feature = self._heads(h_a, toks.shape[1])
        h_r = h_r.float()
        pred = h_r[:, n_p - 1 + torch.tensor(slot_latent, device=self.device)]
        exit_logits = self.exit_head(h_r[:, n_p + torch.tensor(slot_end, device=self.device) - 1])[..., 0]
        chosen_end = n_p + groups * (self.G + 1) + self.G
        if mode == "off":  # as at inference: the value reads the prompt's last token
            chosen_end = torch.full_like(chosen_end, n_p - 1)
        value = self.value_head(h_r[torch.arange(b, device=self.device), chosen_end])
        return TrainOut(logits, feature, exit_logits, pred, value)

    def _joint(self, x_r, pos_r, valid_r, vis_r, deepstack, x_a, pos_a, prefix_valid, n_fast):
        """Reasoning sequence + acting block in one layer loop. Shared: one sequence through the tower.
        Expert: per layer, the tower's layer on the reasoning tokens, then the expert's layer on the acting
        tokens over [that layer's reasoning K/V ; own K/V]."""
        n_act = self.H * self.D
        lm = hf_compat.text_model(self.vlm)
        if self.expert is None:
            x = torch.cat([x_r, x_a], 1)
            cos, sin = self._rotary(x, torch.cat([pos_r, pos_a], 2))
            vis = torch.cat([vis_r, torch.zeros_like(x_a[..., 0], dtype=torch.bool)], 1)
            mask = towers.joint_mask(valid_r, prefix_valid, n_fast, n_act)
            h, _ = towers.run_stack(hf_compat.layers(lm), hf_compat.final_norm(lm), x, cos, sin, mask, None,
                                    deepstack, vis, checkpoint=self.cfg.grad_checkpointing)
            r = x_r.shape[1]
            return h[:, :r], h[:, r:]
        cos_r, sin_r = self._rotary(x_r, pos_r)
        cos_a, sin_a = self._rotary(x_a, pos_a)
        mask_r = towers.causal_mask(valid_r)
        mask_a = towers.acting_mask(prefix_valid, n_fast, n_act)

        def pair(i: int, layer_r: nn.Module, layer_a: nn.Module, h_r: torch.Tensor, h_a: torch.Tensor):
            h_r, kv = hf_compat.decoder_layer(layer_r, h_r, cos_r, sin_r, mask_r, None)
            if i < len(deepstack):
                h_r = towers.add_deepstack(h_r, vis_r, deepstack[i])
            h_a, _ = hf_compat.decoder_layer(layer_a, h_a, cos_a, sin_a, mask_a, kv)
            return h_r, h_a

        h_r, h_a = x_r, x_a
        for i, (layer_r, layer_a) in enumerate(zip(hf_compat.layers(lm), self.expert.layers)):
            h_r, h_a = towers.maybe_checkpoint(self.cfg.grad_checkpointing, pair, i, layer_r, layer_a, h_r, h_a)
        return hf_compat.final_norm(lm)(h_r), self.expert.norm(h_a)

    # --- what the learner's losses need ---------------------------------------------------------------------

    def action_targets(self, actions) -> torch.Tensor:
        """Robot-unit action chunks (B, H, D) → target tokens (B, H·D) for the cross-entropy."""
        a = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        return torch.from_numpy(self.action_tokenizer.encode(a).reshape(len(a), -1)).to(self.device)

    def normalize_action(self, actions) -> torch.Tensor:
        """Robot-unit action chunks (B, H, D) → q01/q99-normalised (B, H, D) float32 (what Q reads)."""
        a = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions,
                            dtype=torch.float32, device=self.device)
        return self.action_tokenizer.normalize(a)

    @staticmethod
    def chunk_logprob(action_logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0):
        """log π(chunk) = Σ over the H·D tokens (the authors' joint action log-probability)."""
        logp = F.log_softmax(action_logits / temperature, -1)
        return logp.gather(-1, tokens[..., None])[..., 0].sum(-1)

    def q(self, feature: torch.Tensor, action_norm: torch.Tensor) -> torch.Tensor:
        return self.q_heads(feature, action_norm)

    @torch.no_grad()
    def q_target(self, feature: torch.Tensor, action_norm: torch.Tensor) -> torch.Tensor:
        return self.q_targets(feature, action_norm)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by role: "lora" (both towers' adapters), "new" (latent/exit/action/fast-input
        modules), "value" (value head), "critic" (Q ensemble). The actor's optimiser takes lora (+ new)."""
        groups: dict[str, list] = {"lora": [], "new": [], "value": [], "critic": []}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            top = name.split(".")[0]
            key = "lora" if "lora_" in name else "value" if top == "value_head" else \
                "critic" if top == "q_heads" else "new"
            groups[key].append(p)
        return groups

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # --- adapters -----------------------------------------------------------------------------------------

    def export_adapter(self, version: int) -> adapter_io.AdapterBlob:
        """Exactly what the learner trains (LoRA of both towers, new modules, value and Q heads) as
        safetensors bytes, stamped with `version` (which this policy now carries)."""
        with self._lock:
            self.version = int(version)
            return adapter_io.pack(self.trainable_state(), self.version)

    def load_adapter(self, blob: adapter_io.AdapterBlob) -> None:
        """Swap in an exported adapter in place. Checked first (`adapter.verify`); a bad blob raises
        AdapterError and leaves the policy untouched."""
        self.swap(adapter_io.verify(blob, self.trainable_state()), blob.version)

    def swap(self, tensors: dict[str, torch.Tensor], version: int) -> None:
        """Copy tensors that `adapter.verify` passed into the live parameters and take their `version`. Under
        the lock, so a reason()/act() in flight finishes on the old weights; prefixes made earlier keep their
        `version`. Only the copies happen here: the hot reloader verifies off the control loop."""
        own = self.trainable_state()
        with self._lock, torch.no_grad():
            for k, t in tensors.items():
                own[k].copy_(t)
            self.version = int(version)



def _rms(w: torch.Tensor) -> float:
    return 0.02 if w.is_meta else w.float().pow(2).mean().sqrt().item()  # meta: shape-only builds


def choose_exit(e: torch.Tensor, explore: bool, threshold: float, temperature: float) -> tuple[int, float]:
    """The exit group from the <latent_end> logits of the candidates computed so far (paper §2.4).

    Explore: sample from softmax(e / T) across the candidates (eq. 6); log-prob under that categorical.
    Greedy: the last computed candidate if it reached σ(e) ≥ τ (generation stops at the first that does),
    else the most probable one; log-prob = log σ(e[exit]), the exit's own confidence."""
    if explore:
        logp = F.log_softmax(e / temperature, -1)
        g = int(torch.multinomial(logp.exp(), 1)[0])
        return g, float(logp[g])
    g = len(e) - 1 if torch.sigmoid(e[-1]) >= threshold else int(e.argmax())
    return g, float(F.logsigmoid(e[g]))
