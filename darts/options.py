"""Option declarations: typed dataclass fields with help, bounds and choices, and everything generated from them:
command-line flags, validation of values from the command line, Python calls and saved configs, and JSON.

A run's settings come in option sets: the general :class:`darts.config.SearchConfig`, and the ``Options`` dataclass
of the chosen search method and search space. Each field is declared once with :func:`option`; its flag is
``--{prefix-}{name}`` (``arch_lr`` <-> ``--arch-lr``, PC-DARTS's ``k`` <-> ``--pc-k``) and its *dest* (the keyword
of :func:`darts.search`) is ``{prefix_}{name}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from .errors import ConfigError

INT64 = (-(2**63), 2**63 - 1)


def option(default, help: str, *, choices=None, min=None, max=None, min_exclusive: bool = False,
           max_exclusive: bool = False, metavar: str | None = None, positive: bool = False, nonneg: bool = False):
    """A dataclass field that is an option: ``default``, ``help`` for ``--help``, and its bounds.

    ``positive`` / ``nonneg`` are shorthands for ``min=0`` exclusive / inclusive. Integers are bounded to 64 bits
    unless given tighter bounds. ``choices`` restricts a value (or each item of a tuple) to a set.
    """
    if positive:
        min, min_exclusive = 0, True
    elif nonneg:
        min, min_exclusive = 0, False
    meta = dict(help=help, choices=tuple(choices) if choices else None, min=min, max=max,
                min_exclusive=min_exclusive, max_exclusive=max_exclusive, metavar=metavar)
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """One option as the command line and the validators see it."""

    name: str       # the dataclass field
    dest: str       # prefix_name: the keyword and the config.json key
    flag: str       # --prefix-name
    kind: type      # int, float, str, bool or tuple (of str)
    optional: bool  # None is a valid value
    default: object
    meta: dict
    owner: str      # "" for the general options, else "--method NAME" / "--space NAME"


def _kind(tp) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``tuple[str, ...]`` -> (tuple, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported option type {tp}")
        return _kind(args[0])[0], True
    if origin is tuple or tp is tuple:
        return tuple, False
    if tp in (int, float, str, bool):
        return tp, False
    raise TypeError(f"unsupported option type {tp}")


def specs(cls, prefix: str = "", owner: str = "") -> list[OptionSpec]:
    """The :class:`OptionSpec` of every field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        kind, optional = _kind(hints[f.name])
        dest = f"{prefix}_{f.name}" if prefix else f.name
        default = f.default if f.default is not MISSING else None
        out.append(OptionSpec(f.name, dest, "--" + dest.replace("_", "-"), kind, optional, default,
                              dict(f.metadata), owner))
    return out


# ---------------------------------------------------------------------------------------------------------
# values: parse (command line), check (any source)


def check_value(spec: OptionSpec, value, source: str = ""):
    """``value`` for ``spec``, converted where that is lossless (an int for a float, a list for a tuple, a comma
    string for a tuple); :class:`ConfigError` naming the option and the problem otherwise."""
    where = f" (in {source})" if source else ""
    name = spec.flag

    def bad(msg):
        return ConfigError(f"{name} {msg}{where}")

    if value is None:
        if spec.optional:
            return None
        raise bad("needs a value, got none")
    kind = spec.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise bad(f"must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)
            else:
                raise bad(f"must be an integer, got {_show(value)}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"must be a number, got {_show(value)}")
        if isinstance(value, int) and abs(value) > 2**63:
            raise bad(f"is out of range, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise bad(f"must be a finite number, got {value}")
    elif kind is str:
        if not isinstance(value, str):
            raise bad(f"must be a string, got {_show(value)}")
    elif kind is tuple:
        if isinstance(value, str):
            value = tuple(s.strip() for s in value.split(",") if s.strip())
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad(f"must be a list of names, got {_show(value)}")
        value = tuple(value)
        if not value:
            raise bad("must name at least one item")
    meta = spec.meta
    choices = meta.get("choices")
    if choices:
        items = value if kind is tuple else (value,)
        for v in items:
            if v not in choices:
                raise bad(f"must be one of {', '.join(map(str, choices))}, got {v!r}")
    if kind in (int, float):
        lo, hi = meta.get("min"), meta.get("max")
        if kind is int:
            lo = INT64[0] if lo is None else lo
            hi = INT64[1] if hi is None else hi
        if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
            raise bad(("must be positive" if lo == 0 and meta.get("min_exclusive") else
                       "must not be negative" if lo == 0 else f"must be {'>' if meta.get('min_exclusive') else '>='} "
                       f"{lo}") + f", got {_show(value)}")
        if hi is not None and (value > hi or (meta.get("max_exclusive") and value == hi)):
            raise bad(f"must be {'<' if meta.get('max_exclusive') else '<='} {hi}, got {_show(value)}")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_options(obj, prefix: str = "", source: str = ""):
    """Check (and normalise, in place) every field of the option dataclass ``obj``; returns ``obj``."""
    for spec in specs(type(obj), prefix):
        object.__setattr__(obj, spec.name, check_value(spec, getattr(obj, spec.name), source))
    return obj


class OptionsOwner:
    """What a search method, a search space and a strategy share: a registered ``name``, its ``paper``, its own
    ``Options`` dataclass whose flags are ``--{flag_prefix}-{field}``, and construction from an ``Options`` instance
    or its fields as keywords (checked), then :meth:`setup`. ``kind`` (``method``, ``space``, ``strategy``) names
    it in messages: ``--method NAME``."""

    name: typing.ClassVar[str] = ""
    paper: typing.ClassVar[str] = ""
    flag_prefix: typing.ClassVar[str] = ""
    kind: typing.ClassVar[str] = ""

    @dataclass
    class Options:
        """No options."""

    def __init__(self, options=None, /, **kwargs):
        self.options = own_options(self, options, kwargs)
        self.setup()

    def setup(self) -> None:
        """Derive state from ``self.options``; raise :class:`ConfigError` for inconsistent ones."""


def own_options(owner, options, kwargs: dict):
    """The checked ``Options`` of a method, space or strategy: ``options`` (an instance) or ``kwargs`` (its fields
    by name), not both; ``owner`` gives ``Options``, ``flag_prefix`` and ``name``, and its kind names the errors."""
    source = f"--{owner.kind} {owner.name}"
    if options is None:
        try:
            options = owner.Options(**kwargs)
        except TypeError as e:  # an unknown keyword
            raise ConfigError(f"{source}: {e}") from None
    elif kwargs:
        raise ConfigError(f"{source}: give the options as keywords or as an Options object, not both")
    return check_options(options, owner.flag_prefix, source=source)


def build(cls, values: dict, prefix: str = "", source: str = ""):
    """An instance of the option dataclass ``cls`` from ``values`` keyed by *dest*, checked; missing keys take the
    field defaults. Unknown keys are an error."""
    by_dest = {s.dest: s for s in specs(cls, prefix)}
    unknown = set(values) - set(by_dest)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))}" + (f" ({source})" if source else ""))
    kw = {by_dest[d].name: check_value(by_dest[d], v, source) for d, v in values.items()}
    return check_options(cls(**kw), prefix, source)


def to_dict(obj, prefix: str = "") -> dict:
    """``{dest: value}`` of an option dataclass, JSON-ready (tuples as lists)."""
    out = {}
    for spec in specs(type(obj), prefix):
        v = getattr(obj, spec.name)
        out[spec.dest] = list(v) if isinstance(v, tuple) else v
    return out


# ---------------------------------------------------------------------------------------------------------
# the command line


def _parser_type(spec: OptionSpec):
    """An argparse ``type`` that converts one value (bounds and choices are checked with the other sources')."""
    def convert(text: str):
        if spec.kind is int:
            if len(text.strip().lstrip("+-")) > 19:
                raise argparse.ArgumentTypeError(f"must be a 64-bit integer, got {text[:20]}... ({len(text)} "
                                                 "characters)")
            try:
                return int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if spec.kind is float:
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if spec.kind is tuple:
            items = tuple(s.strip() for s in text.split(",") if s.strip())
            if not items:
                raise argparse.ArgumentTypeError("expected a comma-separated list")
            return items
        return text

    convert.__name__ = spec.kind.__name__
    return convert


def add_flags(parser, option_specs: list[OptionSpec], title: str | None = None, description: str | None = None):
    """Add one flag per spec to ``parser`` (in an argument group when ``title`` is given). Values the user does not
    give are absent from the parsed namespace (``argparse.SUPPRESS``), so the caller knows what was given."""
    target = parser.add_argument_group(title, description) if title else parser
    for spec in option_specs:
        kw = dict(dest=spec.dest, help=spec.meta.get("help", ""), default=argparse.SUPPRESS)
        if spec.meta.get("metavar"):
            kw["metavar"] = spec.meta["metavar"]
        if spec.kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _parser_type(spec)
            if spec.meta.get("choices") and spec.kind is not tuple:
                kw["metavar"] = kw.get("metavar") or "{" + ",".join(map(str, spec.meta["choices"])) + "}"
        d = spec.default
        if d is not None and not isinstance(d, bool):
            kw["help"] += f" (default: {','.join(d) if isinstance(d, tuple) else d})"
        elif isinstance(d, bool) and d:
            kw["help"] += " (default: on)"
        target.add_argument(spec.flag, **kw)
    return target


def replace(obj, **changes):
    """``dataclasses.replace`` that keeps working on frozen and plain option dataclasses alike."""
    return dataclasses.replace(obj, **changes)
