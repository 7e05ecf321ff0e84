"""The policy's offline commands: `lastr1 latents` (policy/latent_targets.py) and `lastr1 warmup`
(policy/warmup.py). torch and the models are imported only inside the command that runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from lastr1.configs import add_config_argument, load_config

# --- `lastr1 latents` ---------------------------------------------------------------------------------------


def add_latents_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--dataset", default=None,
                        help="episode folder (default: <run_dir>/<learner.demo_dir>)")
    parser.add_argument("--camera", default="front", help="camera whose future frames become targets")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per teacher forward pass")
    parser.add_argument("--force", action="store_true",
                        help="recompute every episode and the channel set (after changing teacher or camera)")


def latents_main(args: argparse.Namespace) -> int:
    from lastr1.policy.latent_targets import compute_latent_targets

    cfg = load_config(args, skip=("robot", "transport"))  # offline: files only
    root = Path(args.dataset) if args.dataset else Path(cfg.run_dir) / cfg.learner.demo_dir
    summary = compute_latent_targets(root, cfg.policy, camera=args.camera, batch_size=args.batch_size,
                                     force=args.force)
    print(
        f"latent targets in {root}: {summary['computed']} episodes computed, {summary['skipped']} already done; "
        f"k = {summary['k']} of {summary['teacher_width']} channels of {summary['teacher']} "
        f"(indices in {summary['channels']})"
    )
    return 0


# --- `lastr1 warmup` ----------------------------------------------------------------------------------------


def add_warmup_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--dataset", help="episode folder (default: <run_dir>/<learner.demo_dir>)")
    parser.add_argument("--out", help="checkpoint folder to write (default: <run_dir>/<policy.warmup.out>)")
    parser.add_argument("--no-latent-loss", action="store_true",
                        help="train without `lastr1 latents` targets (latent slots fed zeros, no cosine loss)")


def warmup_main(args: argparse.Namespace) -> int:
    from lastr1.policy.warmup import warmup

    cfg = load_config(args, skip=("robot", "transport"))  # offline: files only
    res = warmup(cfg, dataset=args.dataset, out=args.out, no_latent_loss=args.no_latent_loss or None)
    print(f"warm-up done in {res.seconds:.0f} s: action-token accuracy {res.token_accuracy:.3f} on "
          f"{res.n_samples} demonstration steps; checkpoint {res.checkpoint}")
    print(f"  the actor and learner load it with: --policy.checkpoint {res.checkpoint}")
    return 0
