"""The search-method registry (``--method``): :func:`register_method` on a :class:`SearchMethod` subclass."""
from __future__ import annotations

from ..errors import ConfigError
from ..registry import Registry
from .base import SearchMethod

METHODS = Registry("search method", flag="--method",
                   hint="Add your own: subclass darts.methods.SearchMethod in a file of yours, decorate it with "
                        "@register_method and load it with --plugin FILE.")


def register_method(cls):
    """Class decorator: make ``cls`` available as ``--method cls.name``. A duplicate name is an error."""
    if not (isinstance(cls, type) and issubclass(cls, SearchMethod)):
        raise ConfigError(f"@register_method takes a SearchMethod subclass, got {cls!r}")
    if not cls.name:
        raise ConfigError(f"{cls.__name__} needs a `name` (the --method value) to be registered")
    METHODS.register(cls.name, cls, origin=cls.__module__)
    return cls


def get_method_class(name: str):
    """The class registered as ``--method name``."""
    return METHODS.get(name)


def get_method(name: str, **options):
    """An instance of the method ``name``; ``options`` are its options (unprefixed: ``get_method("pcdarts", k=2)``)."""
    return METHODS.get(name)(**options)


def list_methods() -> list[str]:
    """The registered method names, in registration order."""
    return METHODS.list()
