"""One base error for every failure a user can act on.

Each carries a hint that says what to do; the CLI prints message and hint without a traceback. Packages
subclass it (`robot.errors.StaleFrameError`, `transport.errors.InvalidMessage`, ...) so callers can catch
precisely while the CLI still catches them all.
"""

from __future__ import annotations


class Lastr1Error(RuntimeError):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}\n  -> {self.hint}" if self.hint else msg


class ConfigError(Lastr1Error):
    """A config file or override that cannot be read into the schema."""


class MissingDependency(Lastr1Error):
    """An optional library (hardware driver, simulator) is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import an optional library lazily, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{purpose} needs the Python module {module!r}, which is not importable: {e}",
            hint=f"pip install 'lastr1[{extra}]'",
        ) from None
