"""Implementations of the mixed op ``Σ_k w_k · op_k(x)`` (DARTS Eq. 2) and of the search cell, and the dispatch.

``reference`` is the specification: every candidate op run as its own PyTorch module and summed, edge by edge.
``fused_cpu`` (:mod:`kernels.fused_cpu`, pure PyTorch, any device) computes the same sums node by node with
shared ReLUs and pools, no ``none`` op, and the BN tails fused with the weighted sum. ``triton`` is the same cell
with that fused sum as Triton kernels (:mod:`kernels.triton_mixed`). :func:`resolve_kernels` picks one by name and
device. Implementations are imported on first use and Triton never at module level, so CPU-only installs work.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Callable

from .reference import cell_reference, mixed_op_reference

MixedOpImpl = Callable  # (mixed_op_module, x, weights) -> Tensor
CellImpl = Callable  # (search_cell_module, s0, s1, weights) -> Tensor

#: the values of ``--kernels``
KERNEL_CHOICES = ("auto", "reference", "triton")

# name -> (module, mixed-op implementation, cell implementation); loaded lazily by :func:`_load`.
_IMPLS: dict[str, tuple[str, str, str]] = {
    "reference": ("kernels.reference", "mixed_op_reference", "cell_reference"),
    "fused_cpu": ("kernels.fused_cpu", "mixed_op_fused_cpu", "cell_fused_cpu"),
    "triton": ("kernels.triton_mixed", "mixed_op_triton", "cell_triton"),
}
_LOADED: dict[str, tuple[MixedOpImpl, CellImpl]] = {"reference": (mixed_op_reference, cell_reference)}


def triton_usable(device) -> tuple[bool, str]:
    """Whether the Triton kernels can run on ``device``, and why not: CUDA with triton, or ``TRITON_INTERPRET=1``."""
    if importlib.util.find_spec("triton") is None:
        return False, "the triton package is not installed"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False, f"Triton kernels need a CUDA device (got {device}; set TRITON_INTERPRET=1 to run them on CPU)"
    return True, ""


def resolve_kernels(name: str, device) -> str:
    """Map a ``--kernels`` setting to the implementation used on ``device``.

    ``auto``: ``triton`` on CUDA when triton is installed, else ``fused_cpu`` (fastest in pure PyTorch).
    ``reference``: the unfused path, for comparison. ``triton`` where it cannot run raises
    :class:`darts.errors.ConfigError`, as does an unknown name.
    """
    from darts.errors import ConfigError  # not at module level: darts imports this package

    if name == "auto":
        import torch

        dev = torch.device(device)
        return "triton" if dev.type == "cuda" and triton_usable(dev)[0] else "fused_cpu"
    if name not in _IMPLS:
        raise ConfigError(f"unknown kernels setting {name!r}; choose from {', '.join(KERNEL_CHOICES)}")
    if name == "triton":
        ok, why = triton_usable(device)
        if not ok:
            raise ConfigError(f"--kernels triton cannot run here: {why}; use --kernels auto or reference")
    return name


def _load(name: str) -> tuple[MixedOpImpl, CellImpl]:
    if name not in _LOADED:
        module, mixed, cell = _IMPLS[name]
        mod = importlib.import_module(module)
        _LOADED[name] = (getattr(mod, mixed), getattr(mod, cell))
    return _LOADED[name]


def get_impl(name: str) -> MixedOpImpl:
    """The mixed-op implementation ``(mixed_op, x, weights) -> Tensor`` registered under a resolved name."""
    return _load(name)[0]


def get_cell_impl(name: str) -> CellImpl:
    """The search-cell implementation ``(cell, s0, s1, weights) -> Tensor`` registered under a resolved name."""
    return _load(name)[1]


__all__ = ["KERNEL_CHOICES", "resolve_kernels", "get_impl", "get_cell_impl", "triton_usable",
           "mixed_op_reference", "cell_reference"]
