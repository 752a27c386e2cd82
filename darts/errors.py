"""The project's own error types: every problem a user can cause is one of these, with a message that names it.

Scripts catch :class:`DartsError` and print its message as one line; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import difflib


class DartsError(Exception):
    """Base class for user-facing errors (bad input, bad files, bad runs)."""


class UnknownOpError(DartsError, KeyError):
    """An op name that is not in the registry."""

    def __init__(self, name: str, known: list[str]):
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(
            f"unknown op {name!r}{hint} Registered ops: {', '.join(sorted(known))}. "
            "Register your own with @register_op and load it with --ops-module."
        )
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class GenotypeError(DartsError, ValueError):
    """A genotype (JSON file, log text or in-memory object) that is malformed or inconsistent."""


class ConfigError(DartsError, ValueError):
    """A command-line flag or config value that is out of range or inconsistent with another."""


class DataError(DartsError):
    """A data set that is missing, empty or unusable."""


class CheckpointError(DartsError):
    """A checkpoint that is missing, truncated, unsafe or written by an incompatible run."""


class NonFiniteLossError(DartsError, FloatingPointError):
    """A loss or gradient became NaN or infinite."""
