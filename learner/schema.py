"""What the learner stores, fixed before any actor connects: the cameras and image size of the robot config, and
the proprio, chunk and latent shapes of the policy it trains. A transition that does not fit is refused (the actor
is told why and stops resending it); it never reaches the replay buffer, whose layout it would otherwise fix
or break."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.policy import Policy
    from lastr1.transport.messages import Transition


@dataclass(frozen=True)
class Schema:
    cameras: tuple[str, ...]  # sorted
    image: tuple[int, int]  # (H, W)
    proprio: int
    chunk: tuple[int, int]  # (H, D)
    latent_max: int  # latents may have up to this many positions (padded in the buffer) ...
    latent_dim: int  # ... of exactly this width

    @classmethod
    def of(cls, cfg: Config, policy: Policy) -> Schema:
        side = cfg.robot.image_size
        return cls(tuple(sorted(c.name for c in cfg.robot.cameras)), (side, side), policy.proprio_dim,
                   (policy.H, policy.D), policy.L_max, policy.d)

    def mismatches(self, t: Transition) -> list[str]:
        """Every way `t` differs from this schema, each naming the field, what came and what is expected."""
        out = []
        for what, imgs in (("images", t.images), ("next_images", t.next_images)):
            if imgs is None:
                continue
            if tuple(sorted(imgs)) != self.cameras:
                out.append(f"{what}: cameras {sorted(imgs)}, the learner expects {list(self.cameras)}")
            h, w = self.image
            out += [f"{what}.{c}: {img.shape[0]}x{img.shape[1]} pixels, the learner expects {h}x{w}"
                    for c, img in sorted(imgs.items()) if img.shape[:2] != self.image]
        if t.proprio.shape != (self.proprio,):
            out.append(f"proprio: {t.proprio.shape[0]} values, the learner expects {self.proprio}")
        # A human step may carry its executed action alone (1 x D): the learner assembles its chunk.
        if t.action.shape != self.chunk and not (t.intervention and t.action.shape == (1, self.chunk[1])):
            out.append(f"action: chunk {t.action.shape[0]}x{t.action.shape[1]}, the learner expects "
                       f"{self.chunk[0]}x{self.chunk[1]} (policy.chunk x action_dim·arms; 1x{self.chunk[1]} "
                       "for a human step)")
        if t.latents is not None and (t.latents.shape[0] > self.latent_max or t.latents.shape[1] != self.latent_dim):
            out.append(f"latents: {t.latents.shape[0]}x{t.latents.shape[1]}, the learner expects at most "
                       f"{self.latent_max} positions of width {self.latent_dim}")
        return out

    def declared(self) -> dict:
        """This layout as an actor declares its own in its heartbeat (`shapes`, docs/wire.md §3)."""
        return {"cameras": list(self.cameras), "image": list(self.image), "proprio": self.proprio,
                "action": list(self.chunk), "latents": [self.latent_max, self.latent_dim]}

    def declared_mismatches(self, shapes: dict) -> list[str]:
        """How an actor's declared layout differs from this one, each naming what it must change."""
        want, out = self.declared(), []
        if sorted(shapes["cameras"]) != want["cameras"]:
            out.append(f"cameras {sorted(shapes['cameras'])}, the learner expects {want['cameras']} (robot.cameras)")
        if list(shapes["image"]) != want["image"]:
            out.append(f"images {shapes['image'][0]}x{shapes['image'][1]}, the learner expects "
                       f"{self.image[0]}x{self.image[1]} (robot.image_size)")
        if shapes["proprio"] != self.proprio:
            out.append(f"proprio {shapes['proprio']}, the learner expects {self.proprio} (task.n_arms)")
        if list(shapes["action"]) != want["action"]:
            out.append(f"action chunk {shapes['action'][0]}x{shapes['action'][1]}, the learner expects "
                       f"{self.chunk[0]}x{self.chunk[1]} (policy.chunk, task.n_arms)")
        if shapes["latents"][0] > self.latent_max or shapes["latents"][1] != self.latent_dim:
            out.append(f"latents {shapes['latents'][0]}x{shapes['latents'][1]}, the learner expects at most "
                       f"{self.latent_max} of width {self.latent_dim} (policy)")
        return out

    def describe(self) -> str:
        return (f"cameras {list(self.cameras)} at {self.image[0]}x{self.image[1]}, proprio {self.proprio}, "
                f"action {self.chunk[0]}x{self.chunk[1]}, latents ≤{self.latent_max}x{self.latent_dim}")
