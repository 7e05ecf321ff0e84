"""Failures of the wire, each with what to do about it."""

from __future__ import annotations

from lastr1.errors import Lastr1Error


class TransportError(Lastr1Error):
    pass


class InvalidMessage(TransportError):
    """Bytes from a peer that are not a valid message of this schema version.

    `envelope` holds whatever identified the sender (type, actor_id, epoch, seq) when that much could be read,
    so the learner can tell the actor which transition it refused.
    """

    def __init__(self, reason: str, envelope: dict | None = None):
        super().__init__(f"invalid message: {reason}")
        self.reason = reason
        self.envelope = envelope


class KeyFileMissing(TransportError):
    pass


class SpoolFull(TransportError):
    """The actor's on-disk spool of unacknowledged transitions reached `transport.spool_max_bytes`."""
