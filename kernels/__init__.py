"""Implementations of the mixed op ``Σ_k w_k · op_k(x)`` (DARTS Eq. 2) and the dispatch between them.

``reference`` is the specification: every candidate op run as its own PyTorch module and summed. Fused
implementations plug in here (issue 4) and must match it; :func:`resolve_kernels` picks one by name and device.
Triton is never imported at module level, so CPU-only installs work.
"""
from __future__ import annotations

from typing import Callable

from .reference import mixed_op_reference

MixedOpImpl = Callable  # (mixed_op_module, x, weights) -> Tensor

KERNEL_CHOICES = ("auto", "reference")

_IMPLS: dict[str, MixedOpImpl] = {"reference": mixed_op_reference}


def resolve_kernels(name: str, device) -> str:
    """Map a ``--kernels`` setting to the implementation used on ``device``.

    ``auto`` takes the fastest implementation available for the device; today that is the reference on every
    device (fused kernels are registered by issue 4). An explicit name that cannot run raises ``ValueError``.
    """
    if name == "auto":
        return "reference"
    if name not in _IMPLS:
        raise ValueError(f"unknown kernels setting {name!r}; choose from {', '.join(KERNEL_CHOICES)}")
    return name


def get_impl(name: str) -> MixedOpImpl:
    """The mixed-op implementation registered under a resolved name."""
    return _IMPLS[name]


__all__ = ["KERNEL_CHOICES", "resolve_kernels", "get_impl", "mixed_op_reference"]
