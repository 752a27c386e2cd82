"""Loading a user's plug-in files: Python files or modules that register ops, methods, spaces or kernels.

``--plugin FILE`` (and ``--ops-module``, its older name) imports each one before anything else is resolved. A file
is imported under a private module name derived from its absolute path, so a file named like a standard module
(``copy.py``) is still loaded, and loading the same file again in one process does nothing.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys

from .errors import DartsError, PluginError

_LOADED_FILES: dict[str, str] = {}  # absolute path -> module name


def _load_file(path: str) -> None:
    full = os.path.realpath(path)
    if full in _LOADED_FILES:
        return
    if not os.path.isfile(full):
        raise PluginError(f"plug-in file {path!r} does not exist")
    stem = os.path.splitext(os.path.basename(full))[0]
    digest = hashlib.sha1(full.encode()).hexdigest()[:10]
    name = f"darts_forge_plugin_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise PluginError(f"plug-in file {path!r} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _LOADED_FILES[full] = name  # before running it: a plug-in that fails halfway is not run twice
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def load_plugin(spec: str) -> None:
    """Import one plug-in: a ``.py`` file path or an importable module name (``my_ops``, ``pkg.ops``).

    Raises :class:`PluginError` naming the plug-in and the cause, in one line, if it cannot be imported or raises.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plug-in must be a file path or a module name, got {spec!r}")
    try:
        if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
            _load_file(spec)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            importlib.import_module(spec)
    except DartsError as e:
        raise PluginError(f"plug-in {spec!r}: {e}") from e
    except Exception as e:  # an import failure of the user's file: name it, with the cause, in one line
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PluginError(f"could not import plug-in {spec!r}: {type(e).__name__}: {text}") from e


def load_plugins(plugins=None, ops_module: str | None = None) -> None:
    """Import every plug-in of ``plugins`` (a sequence or a comma-separated string) and ``ops_module``."""
    if isinstance(plugins, str):
        plugins = [p.strip() for p in plugins.split(",") if p.strip()]
    for spec in [*(plugins or ()), *([ops_module] if ops_module else [])]:
        load_plugin(spec)


load_ops_module = load_plugin  # the name of earlier versions
