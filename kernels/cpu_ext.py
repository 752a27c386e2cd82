"""The compiled CPU kernels (``kernels/csrc``), built on first use with the C++ compiler PyTorch finds.

Two memory-bound chains of the fused CPU path, on channels-last float32 maps, each forward and backward:

* ``csrc/bn_sum.cpp``: the BN-weighted sum ``Σ_k w_k · BN(y_k)`` of a node (:mod:`kernels.bn_sum`), which reads
  each input once per pass instead of running one BatchNorm and one add per input, and the BN running
  statistics of all its terms in one call;
* ``csrc/bn_relu.cpp``: ``relu(BN(u))`` inside a separable conv (:mod:`kernels.sepconv`), one pass instead of
  two, and a backward from ``u`` that needs no recomputed activation where no weight gradient is wanted.

Each C++ file writes out its math; ``tests/kernels/test_cpu_ext.py`` checks them against float64 PyTorch.

Building takes about 10 s with g++ on 2 cores, once per machine: the library is cached by
``torch.utils.cpp_extension`` under ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``). It is
compiled for the instruction set of the machine that builds it (AVX-512 or AVX2 where present) against the
installed torch; both are part of the library's name, so a cache shared between machines or kept across a torch
upgrade never loads a library built for another.

Where there is no compiler, or the build fails, or ``DARTS_FORGE_CPU_EXT=0`` is set, :func:`load` returns None
once and logs why, and the pure-PyTorch path runs: the same mathematics, slower.
"""
from __future__ import annotations

import logging
import os
import platform
import time

log = logging.getLogger(__name__)

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
_SOURCES = [os.path.join(_CSRC, f) for f in ("bn_sum.cpp", "bn_relu.cpp", "dwconv.cpp")]
_state: dict = {}


def _isa() -> tuple[str, list[str]]:
    """(name suffix, compiler flags) for the best x86 level this CPU has; generic elsewhere."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "generic", []
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return "avx512", ["-march=x86-64-v4"]
    if {"avx2", "fma", "bmi2"} <= set(flags):
        return "avx2", ["-march=x86-64-v3"]
    return "generic", []


def _clear_stale_lock(cpp_extension, name: str, max_age_s: float = 300.0) -> None:
    """Remove a build lock left by a build that was killed, where PyTorch would wait on it forever.

    Only for PyTorch versions whose lock is a file that blocks by existing (``FileBaton``); newer ones hold an OS
    advisory lock on the file (``FileLock``), which a killed process releases, and there the file must stay.
    """
    if hasattr(cpp_extension, "FileLock"):
        return
    try:
        lock = os.path.join(cpp_extension._get_build_directory(name, False), "lock")
        if os.path.exists(lock) and time.time() - os.path.getmtime(lock) > max_age_s:
            log.warning("removing a stale build lock %s (a build was interrupted)", lock)
            os.remove(lock)
    except (AttributeError, OSError):  # a PyTorch without that helper, or a lock just taken by another process
        pass


def cache_name(isa: str, torch_version: str) -> str:
    """The extension's name, which is its cache key: the instruction set and the torch version it is built for."""
    version = "".join(c if c.isalnum() else "_" for c in torch_version)
    return f"darts_forge_cpu_{isa}_torch_{version}"


def status() -> str:
    """One line for the start-up log: whether the compiled kernels are in use, and why not."""
    if "ops" not in _state:
        return "compiled CPU kernels not loaded yet"
    return "compiled CPU kernels: " + ("in use" if _state["ops"] is not None else f"not used ({_state['why']})")


def load():
    """The compiled ops (``torch.ops.darts_forge``), building them on first call, or None where they cannot be."""
    if "ops" in _state:
        return _state["ops"]
    _state["ops"], _state["why"] = None, ""
    if os.environ.get("DARTS_FORGE_CPU_EXT", "1") == "0":
        _state["why"] = "DARTS_FORGE_CPU_EXT=0"
        return None
    import torch

    if hasattr(torch.ops, "darts_forge") and hasattr(torch.ops.darts_forge, "bn_sum_forward"):
        _state["ops"] = torch.ops.darts_forge  # already loaded in this process
        return _state["ops"]
    try:
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level, quiet.level = quiet.level, logging.ERROR  # its import warns that CUDA is missing: not needed here
        try:
            from torch.utils import cpp_extension
        finally:
            quiet.setLevel(level)
        isa, flags = _isa()
        name = cache_name(isa, torch.__version__)
        _clear_stale_lock(cpp_extension, name)
        log.info("loading the compiled CPU kernels (%s); the first time on a machine they are built, about 10 s", isa)
        cpp_extension.load(name=name, sources=_SOURCES, extra_cflags=["-O3", "-fopenmp", *flags],
                           extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
        _state["ops"] = torch.ops.darts_forge
    except Exception as e:  # no compiler, no headers, a failed build: the PyTorch path still runs
        _state["why"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        log.warning("compiled CPU kernels unavailable, using the PyTorch path: %s", _state["why"])
    return _state["ops"]
