"""Kernel tests run the Triton kernels in the interpreter on CPU tensors unless told otherwise.

``TRITON_INTERPRET`` must be set before triton decorates the kernels (when :mod:`kernels.triton_mixed` is first
imported), so it is set here, at collection. ``TRITON_INTERPRET=0`` in the environment (a CUDA machine, see
``benchmarks/gpu_check.sh``) runs the same tests compiled.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine OpenMP threads that wait on
    each other make a millisecond op take seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
