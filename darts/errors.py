"""The project's own error types: every problem a user can cause is one of these, with a message that names it.

The command line catches :class:`DartsError` and prints its message as one line; anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations


class DartsError(Exception):
    """Base class for user-facing errors (bad input, bad files, bad runs)."""


class ConfigError(DartsError, ValueError):
    """A command-line flag or config value that is out of range or inconsistent with another."""


class DuplicateNameError(DartsError):
    """A name registered twice in one registry (ops, methods, spaces, kernels, early-stop rules, the zoo)."""


class UnknownNameError(DartsError, KeyError):
    """A name that is not in a registry; the message lists the registered names and the closest ones."""

    def __init__(self, message: str, name=None):
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class UnknownOpError(UnknownNameError):
    """An op name that is not in the op registry."""


class GenotypeError(DartsError, ValueError):
    """A genotype (JSON file, log text or in-memory object) that is malformed or inconsistent."""


class DataError(DartsError):
    """A data set that is missing, empty or unusable."""


class CheckpointError(DartsError):
    """A checkpoint that is missing, truncated, unsafe or written by an incompatible run."""


class NonFiniteLossError(DartsError, FloatingPointError):
    """A loss or gradient became NaN or infinite."""


class PluginError(DartsError):
    """A plug-in file or module that cannot be loaded, or whose op, method or space does not behave as declared."""
