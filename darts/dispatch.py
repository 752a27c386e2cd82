"""The ``--kernels`` registry: which implementation of the mixed op and of the search cell runs, on which device.

A kernel setting names a module with two functions, ``mixed_op(mixed_op, x, weights)`` and
``cell(cell, s0, s1, weights)`` (what they may read of the modules is :mod:`kernels.interface`), and says where it
can run. ``auto`` takes the highest-priority setting that declares the device type and can run there. Register
your own with :func:`register_kernel` in a file loaded by ``--plugin``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from kernels import triton_usable

from .errors import ConfigError
from .registry import Registry


@dataclass(frozen=True)
class KernelSpec:
    """A ``--kernels`` setting.

    Attributes:
        name: the setting.
        module: the module holding the two implementations (imported on first use).
        mixed_op, cell: their names in ``module``.
        available: ``device -> (ok, why_not)``.
        auto_for: device types (``"cpu"``, ``"cuda"``) on which ``auto`` may choose it.
        priority: the larger wins under ``auto``.
    """

    name: str
    module: str
    mixed_op: str
    cell: str
    available: Callable[[torch.device], tuple[bool, str]] = lambda device: (True, "")
    auto_for: tuple[str, ...] = ()
    priority: int = 0
    _loaded: dict = field(default_factory=dict, compare=False, repr=False)

    def load(self) -> tuple[Callable, Callable]:
        if "impls" not in self._loaded:
            mod = importlib.import_module(self.module)
            self._loaded["impls"] = (getattr(mod, self.mixed_op), getattr(mod, self.cell))
        return self._loaded["impls"]


KERNELS: Registry[KernelSpec] = Registry("kernel setting", flag="--kernels",
                                         hint="Register your own with darts.register_kernel.")


def register_kernel(name: str, module: str, mixed_op: str = "mixed_op", cell: str = "cell", *,
                    available: Callable[[torch.device], tuple[bool, str]] | None = None,
                    auto_for: tuple[str, ...] = (), priority: int = 0) -> KernelSpec:
    """Register a ``--kernels`` setting (see :class:`KernelSpec`); returns it."""
    spec = KernelSpec(name, module, mixed_op, cell, available or (lambda device: (True, "")), tuple(auto_for),
                      priority)
    return KERNELS.register(name, spec, origin=module)


register_kernel("reference", "kernels.reference", "mixed_op_reference", "cell_reference")
register_kernel("fused_cpu", "kernels.fused_cpu", "mixed_op_fused_cpu", "cell_fused_cpu", auto_for=("cpu", "cuda"),
                priority=1)
register_kernel("triton", "kernels.triton_mixed", "mixed_op_triton", "cell_triton", available=triton_usable,
                auto_for=("cuda",), priority=2)


def kernel_choices() -> tuple[str, ...]:
    """The values of ``--kernels``: ``auto`` and every registered setting."""
    return ("auto", *KERNELS.list())


def resolve_kernels(name: str, device) -> str:
    """Map a ``--kernels`` setting to the implementation that runs on ``device``.

    ``auto``: the highest-priority setting declared for the device type that can run there (``triton`` on CUDA
    with triton installed, else ``fused_cpu``). A named setting that cannot run here, or an unknown name, raises
    :class:`ConfigError`.
    """
    device = torch.device(device)
    if name == "auto":
        ranked = sorted((s for _, s in KERNELS.items() if device.type in s.auto_for), key=lambda s: -s.priority)
        return next((s.name for s in ranked if s.available(device)[0]), "reference")
    if name not in KERNELS:
        raise ConfigError(f"unknown kernels setting {name!r}; choose from {', '.join(kernel_choices())}")
    ok, why = KERNELS.get(name).available(device)
    if not ok:
        raise ConfigError(f"--kernels {name} cannot run here: {why}; use --kernels auto or reference")
    return name


def get_impl(name: str) -> Callable:
    """The mixed-op implementation ``(mixed_op, x, weights) -> Tensor`` of a resolved setting."""
    return KERNELS.get(name).load()[0]


def get_cell_impl(name: str) -> Callable:
    """The search-cell implementation ``(cell, s0, s1, weights) -> Tensor`` of a resolved setting."""
    return KERNELS.get(name).load()[1]
