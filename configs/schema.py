"""The whole run config: one section per package. Each section's dataclasses live in their own module so
each package owns its fields; this file only composes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lastr1.configs.actor import ActorConfig
from lastr1.configs.calibration import CalibrationConfig
from lastr1.configs.demo import DemoConfig
from lastr1.configs.learner import LearnerConfig
from lastr1.configs.policy import PolicyConfig
from lastr1.configs.robot import RobotConfig
from lastr1.configs.task import TaskConfig
from lastr1.configs.transport import TransportConfig


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    # Where a run writes everything (datasets, checkpoints, logs, videos); relative to the working directory.
    run_dir: str = "runs/default"

    def path(self, p: str | Path) -> Path:
        """A path named in the config: absolute, or relative to the working directory when it exists there,
        else inside run_dir (so one run folder holds keys, spool, demos, checkpoints and logs)."""
        p = Path(p).expanduser()
        if p.is_absolute() or p.exists():
            return p
        return Path(self.run_dir) / p
