"""The op registry and the candidate operations of the DARTS search space (Liu et al., 2019, Sec. 3.1).

An op is a factory ``(C, stride, affine) -> nn.Module`` registered under a name with :func:`register_op`.
The names (``sep_conv_3x3``, ...) are the public format shared with the original DARTS code, so genotypes from
its logs and repositories load unchanged. Module attribute names (``op``, ``conv_1``, ...) follow the original
``cnn/operations.py`` so that its checkpoints load into our networks (see :mod:`darts.compat`).

Every ReLU is out-of-place: in the supernet all candidate ops read the same input tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from kernels.interface import FACTORIZED_REDUCE, IDENTITY, ZERO

from .errors import DartsError, PluginError, UnknownOpError
from .registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]


@dataclass(frozen=True)
class OpSpec:
    """A registered op.

    Attributes:
        name: the public op name used in genotypes and ``--primitives``.
        factory: ``(C, stride, affine) -> nn.Module`` mapping ``(B, C, H, W)`` to ``(B, C, H/stride, W/stride)``.
        search_bn: append a non-affine BatchNorm after the op inside the supernet (the DARTS rule for pooling,
            whose output scale otherwise differs from the BN-normalised conv outputs it is mixed with).
        parameter_free: the op has no learnable weights (used by the collapse statistics).
        is_zero: the op's output is identically zero (``none``); discretizers exclude it.
    """

    name: str
    factory: OpFactory
    search_bn: bool = False
    parameter_free: bool = False
    is_zero: bool = False


#: every op, by name
OPS: Registry[OpSpec] = Registry("op", flag="--primitives", unknown_error=UnknownOpError,
                                 hint="Register your own with @register_op in a file of yours and load it with "
                                      "--plugin FILE.")


def register_op(name: str, *, search_bn: bool = False, parameter_free: bool = False, is_zero: bool = False):
    """Decorator registering ``factory(C, stride, affine) -> nn.Module`` under ``name``.

    A duplicate name is an error: silently replacing an op would change what a saved genotype means.

    Example::

        @register_op("my_conv_3x3")
        def my_conv(C, stride, affine):
            return ReLUConvBN(C, C, 3, stride, 1, affine=affine)
    """
    if not isinstance(name, str) or not name or any(c in name for c in " ,\t\n"):
        raise DartsError(f"op name must be a non-empty string without spaces or commas, got {name!r}")

    def decorator(factory: OpFactory) -> OpFactory:
        OPS.register(name, OpSpec(name, factory, search_bn, parameter_free, is_zero),
                     origin=getattr(factory, "__module__", ""))
        return factory

    return decorator


def get_op_spec(name: str) -> OpSpec:
    """The :class:`OpSpec` registered under ``name``; raises :class:`UnknownOpError` otherwise."""
    return OPS.get(name)


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Instantiate the op ``name`` for ``C`` channels and the given stride (1 or 2).

    An op registered outside the library (a plug-in) is checked here, where it enters a network: its factory must
    return an ``nn.Module`` that maps a ``(2, C, 8, 8)`` float32 tensor to ``(2, C, 8/stride, 8/stride)`` float32,
    once per (channels, stride); anything else is a :class:`PluginError` naming the op, its file, and what was
    expected against what came back.
    """
    spec = get_op_spec(name)
    plugin = not spec.factory.__module__.startswith("darts.")
    try:
        module = spec.factory(C, stride, affine)
    except Exception as e:
        if not plugin:
            raise
        raise PluginError(f"{_where(spec)}: its factory raised {type(e).__name__}: {str(e)[:160]} for C={C}, "
                          f"stride={stride}") from None
    if plugin:
        probe_op(spec, module, C, stride, affine)
    return module


_PROBED: set = set()


def _where(spec: OpSpec) -> str:
    import inspect

    try:
        file = inspect.getsourcefile(spec.factory) or spec.factory.__module__
    except TypeError:
        file = spec.factory.__module__
    return f"op {spec.name!r} (registered in {file})"


def probe_op(spec: OpSpec, module, C: int, stride: int, affine: bool, size: int = 8) -> None:
    """Check one built op on a probe tensor: a module, the shape rule, the dtype (:class:`PluginError`)."""
    if not isinstance(module, nn.Module):
        raise PluginError(f"{_where(spec)}: the factory must return a torch.nn.Module, got {type(module).__name__}")
    key = (spec.name, C, stride, affine)
    if key in _PROBED:
        return
    import copy

    expected = (2, C, size // stride, size // stride)
    with torch.random.fork_rng(devices=[]):  # the probe must not move the search's random stream
        x = torch.randn(2, C, size, size, generator=torch.Generator().manual_seed(0))
        try:
            y = copy.deepcopy(module)(x)  # a copy: the probe must not move BatchNorm statistics either
        except Exception as e:
            raise PluginError(f"{_where(spec)}: raised {type(e).__name__}: {str(e)[:160]} on a {tuple(x.shape)} "
                              f"float32 input (C={C}, stride={stride}); expected an output of shape {expected}") from None
    if not isinstance(y, torch.Tensor):
        raise PluginError(f"{_where(spec)}: returned {type(y).__name__} for a {tuple(x.shape)} input; expected a "
                          f"tensor of shape {expected}")
    if tuple(y.shape) != expected:
        raise PluginError(f"{_where(spec)}: returned shape {tuple(y.shape)} for a {tuple(x.shape)} input at stride "
                          f"{stride}; expected {expected}")
    if y.dtype != x.dtype:
        raise PluginError(f"{_where(spec)}: returned dtype {y.dtype} for a float32 input; expected float32")
    _PROBED.add(key)


def list_ops() -> list[str]:
    """Names of all registered ops, in registration order."""
    return OPS.list()


def check_primitives(primitives) -> tuple[str, ...]:
    """Validate a search space (ordered op names): all registered, no duplicates, not empty."""
    primitives = tuple(primitives)
    if not primitives:
        raise DartsError("the search space needs at least one op")
    for p in primitives:
        get_op_spec(p)
    dup = sorted({p for p in primitives if primitives.count(p) > 1})
    if dup:
        raise DartsError(f"duplicate ops in the search space: {', '.join(dup)}")
    return primitives


# ---------------------------------------------------------------------------------------------------------
# Building blocks (module layouts as in the original cnn/operations.py, so checkpoints map one to one)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size, stride, padding, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked DilConv blocks without dilation; only the first one strides (the DARTS separable conv)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    kernel_kind = IDENTITY  # see kernels.interface

    def forward(self, x):
        return x


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the output shape."""

    kernel_kind = ZERO

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convs on offset grids, concatenated (NASNet's reduction skip).

    Needs an even input size, as the original does.
    """

    kernel_kind = FACTORIZED_REDUCE

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise DartsError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Conv7x1x1x7(nn.Sequential):
    """ReLU -> 1x7 conv -> 7x1 conv -> BN (NASNet/AmoebaNet's factorised 7x7).

    A bare Sequential, as in the original, so its checkpoint keys (``_ops.k.1.weight``) match."""

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


# ---------------------------------------------------------------------------------------------------------
# The built-in ops: the 8 DARTS primitives, then the extra ones the published NASNet/AmoebaNet cells use.


@register_op("none", parameter_free=True, is_zero=True)
def _none(C, stride, affine):
    return Zero(stride)


@register_op("max_pool_3x3", search_bn=True, parameter_free=True)
def _max_pool_3x3(C, stride, affine):
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3", search_bn=True, parameter_free=True)
def _avg_pool_3x3(C, stride, affine):
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("skip_connect", parameter_free=True)
def _skip_connect(C, stride, affine):
    # Parameter-free only at stride 1; at stride 2 it is a FactorizedReduce, as in DARTS.
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(C, stride, affine):
    return SepConv(C, C, 3, stride, 1, affine=affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(C, stride, affine):
    return SepConv(C, C, 5, stride, 2, affine=affine)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(C, stride, affine):
    return DilConv(C, C, 3, stride, 2, 2, affine=affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(C, stride, affine):
    return DilConv(C, C, 5, stride, 4, 2, affine=affine)


@register_op("sep_conv_7x7")
def _sep_conv_7x7(C, stride, affine):
    return SepConv(C, C, 7, stride, 3, affine=affine)


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(C, stride, affine):
    return Conv7x1x1x7(C, stride, affine=affine)


# NAS-Bench-201's plain convolutions (Dong & Yang, ICLR 2020, Sec. 2.1): ReLU -> Conv -> BN, so the fused kernels
# recognise them like any other ReLUConvBN and share the ReLU of their input.
@register_op("nor_conv_1x1")
def _nor_conv_1x1(C, stride, affine):
    return ReLUConvBN(C, C, 1, stride, 0, affine=affine)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(C, stride, affine):
    return ReLUConvBN(C, C, 3, stride, 1, affine=affine)


#: The search space of the DARTS paper, in the order of the original ``PRIMITIVES`` (columns of α).
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
