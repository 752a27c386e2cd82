"""One registry mechanism for everything a user can plug in: ops, search methods, search spaces, kernels, early-stop
rules and the zoo of published cells.

A :class:`Registry` maps names to entries. ``register`` adds one (a duplicate name is an error: silently replacing
an entry would change what a saved genotype or run means), ``get`` / ``create`` look one up (an unknown name is an
error that suggests the closest names), ``list`` names them in registration order.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for messages (``"op"``, ``"search method"``, ...).
        flag: the command-line flag that names them, for messages (``"--primitives"``, ``"--method"``).
        hint: how a user adds one, appended to the unknown-name error.
    """

    def __init__(self, kind: str, flag: str = "", hint: str = "", unknown_error: type[UnknownNameError] = UnknownNameError):
        self.kind, self.flag, self.hint, self.unknown_error = kind, flag, hint, unknown_error
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str, entry: T, origin: str = "") -> T:
        """Add ``entry`` under ``name``; :class:`DuplicateNameError` if the name is taken. Returns ``entry``."""
        if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
            raise DuplicateNameError(f"a {self.kind} name must be a non-empty string without spaces or commas, "
                                     f"got {name!r}")
        if name in self._entries:
            by = f" (by {self._origin[name]})" if self._origin.get(name) else ""
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered{by}; choose another name")
        self._entries[name] = entry
        self._origin[name] = origin or getattr(entry, "__module__", "")
        return entry

    def decorator(self, name: str | None = None) -> Callable[[Any], Any]:
        """``@registry.decorator("name")``: register the decorated object (by its ``name`` attribute if no name)."""

        def deco(obj):
            self.register(name if name is not None else obj.name, obj)
            return obj

        return deco

    def get(self, name: str) -> T:
        """The entry registered under ``name``; :class:`UnknownNameError` (with suggestions) otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def create(self, name: str, *args, **kwargs):
        """``get(name)(*args, **kwargs)``: an instance of a registered class or the result of a factory."""
        return self.get(name)(*args, **kwargs)

    def unknown(self, name) -> UnknownNameError:
        """The error for an unknown ``name``: what is registered, and the closest names."""
        known = list(self._entries)
        close = difflib.get_close_matches(str(name), known, n=3) if isinstance(name, str) else []
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        flag = f" (for {self.flag})" if self.flag else ""
        return self.unknown_error(f"unknown {self.kind} {name!r}{flag}{hint} Registered: {', '.join(known) or 'none'}."
                                  + (f" {self.hint}" if self.hint else ""), name=name)

    def list(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def origin(self, name: str) -> str:
        """The module that registered ``name`` (for messages about plug-ins)."""
        self.get(name)
        return self._origin.get(name, "")

    def items(self):
        return self._entries.items()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
