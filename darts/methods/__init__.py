"""Search methods: DARTS and its successors, each a small plug-in at the mixed-op seam and the bilevel step.

``get_method(name, **options)`` builds one; ``list_methods()`` names them. Register your own with
``@register_method`` on a :class:`SearchMethod` subclass (see ``base.py`` for the hooks).
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import SearchMethod, channel_shuffle

_METHODS: dict[str, type[SearchMethod]] = {}


def register_method(cls: type[SearchMethod]) -> type[SearchMethod]:
    """Class decorator: make ``cls`` available as ``--method cls.name``. A duplicate name is an error."""
    if cls.name in _METHODS:
        raise ConfigError(f"search method {cls.name!r} is already registered")
    _METHODS[cls.name] = cls
    return cls


def get_method_class(name: str) -> type[SearchMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown search method {name!r}; choose from {', '.join(_METHODS)}") from None


def get_method(name: str, **options) -> SearchMethod:
    """An instance of the method ``name``; ``options`` are its constructor's keyword arguments."""
    return get_method_class(name)(**options)


def list_methods() -> list[str]:
    return list(_METHODS)


from .darts_minus import DARTSMinus  # noqa: E402
from .drnas import DrNAS  # noqa: E402
from .fairdarts import FairDARTS  # noqa: E402
from .gdas import GDAS  # noqa: E402
from .pcdarts import PCDARTS  # noqa: E402
from .sdarts import SDARTSRS  # noqa: E402

for _cls in (SearchMethod, PCDARTS, GDAS, FairDARTS, DrNAS, DARTSMinus, SDARTSRS):
    register_method(_cls)

METHOD_NAMES = tuple(_METHODS)

__all__ = ["SearchMethod", "register_method", "get_method", "get_method_class", "list_methods", "channel_shuffle",
           "PCDARTS", "GDAS", "FairDARTS", "DrNAS", "DARTSMinus", "SDARTSRS", "METHOD_NAMES"]
