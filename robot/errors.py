"""Errors of the robot layer; each says what the operator should do."""

from lastr1.errors import Lastr1Error


class RobotError(Lastr1Error):
    pass


class DeviceNotFound(RobotError):
    """A camera serial, SpaceMouse or FCI host that is not there."""


class ConnectionLost(RobotError):
    """A device that was there stopped answering."""


class StaleFrameError(RobotError):
    """The newest camera frame is older than the allowed age: the loop must pause, not act on old pixels."""


class ArmFault(RobotError):
    """A reflex/collision error reported by the arm (recoverable with `Arm.recover()`)."""
