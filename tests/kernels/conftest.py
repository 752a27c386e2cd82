"""Kernel tests run the Triton kernels in Triton's interpreter on CPU tensors unless told otherwise.

Triton reads ``TRITON_INTERPRET`` when it decorates the kernels, at the first import of :mod:`kernels.triton_mixed`,
so that import happens here, at collection, with the variable set; the variable is then removed again, and each
kernel test sets it for itself only (the dispatch reads it to know that Triton can run). The rest of the suite,
and every subprocess it starts, never sees it. ``TRITON_INTERPRET=0`` in the environment (a CUDA machine, see
``benchmarks/gpu_check.sh``) runs the same tests compiled.
"""
import importlib.util
import os

import pytest
import torch

_GIVEN = os.environ.get("TRITON_INTERPRET")
INTERPRET = _GIVEN if _GIVEN is not None else "1"
if importlib.util.find_spec("triton") is not None:
    os.environ["TRITON_INTERPRET"] = INTERPRET
    try:
        import kernels.triton_mixed  # noqa: F401  (decorated now, in the interpreter unless told otherwise)
    finally:
        if _GIVEN is None:
            del os.environ["TRITON_INTERPRET"]


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch):
    """This kernel test, and only it, runs with ``TRITON_INTERPRET`` set."""
    monkeypatch.setenv("TRITON_INTERPRET", INTERPRET)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine OpenMP threads that wait on
    each other make a millisecond op take seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
