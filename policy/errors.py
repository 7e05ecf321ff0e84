"""Failures of the policy package a user can act on."""

from __future__ import annotations

from lastr1.errors import Lastr1Error


class PolicyError(Lastr1Error):
    """A policy that cannot be built, loaded or run as asked."""


class AdapterError(PolicyError):
    """Adapter bytes that do not match this policy (hash, names, shapes): rejected, the policy is unchanged."""
