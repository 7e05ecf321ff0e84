"""The whole run config: one section per package. Each section's dataclasses live in their own module so
each package owns its fields; this file only composes them."""

from __future__ import annotations

from dataclasses import dataclass, field

from configs.actor import ActorConfig
from configs.calibration import CalibrationConfig
from configs.learner import LearnerConfig
from configs.policy import PolicyConfig
from configs.robot import RobotConfig
from configs.task import TaskConfig
from configs.transport import TransportConfig


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    # Where a run writes everything (datasets, checkpoints, logs, videos); relative to the working directory.
    run_dir: str = "runs/default"
