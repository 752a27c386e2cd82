"""Implementations of the mixed op ``Σ_k w_k · op_k(x)`` (DARTS Eq. 2) and of the search cell.

``reference`` (:mod:`kernels.reference`) is the specification: every candidate op run as its own PyTorch module
and summed, edge by edge. ``fused_cpu`` (:mod:`kernels.fused_cpu`, PyTorch with compiled C++ kernels where a
compiler is found) computes the same sums node by node with shared ReLUs and pools, no ``none`` op, and the BN
tails fused with the weighted sum. ``triton`` (:mod:`kernels.triton_mixed`) is the same cell with that fused sum as
Triton kernels. What they read of a cell is declared in :mod:`kernels.interface`; this package never imports
:mod:`darts`. The ``--kernels`` registry that chooses one per device is :mod:`darts.dispatch`. Triton is imported
only by the module that needs it, so CPU-only installs work.
"""
from __future__ import annotations

import importlib.util
import os

from .reference import cell_reference, mixed_op_reference


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


__all__ = ["triton_usable", "mixed_op_reference", "cell_reference"]
